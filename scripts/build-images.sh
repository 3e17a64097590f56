#!/usr/bin/env bash
# Builds the static binaries for linux/amd64 and linux/arm64 and assembles the injector and
# webhook images as multi-platform OCI image indexes, without a container engine (umoci + skopeo
# from Debian; images/*.Containerfile describe the same images):
#   .cache/images/injector  oci layout; TAG = an index of linux/amd64 + linux/arm64 images holding
#                           only /akv-env (user 65532); TAG-amd64, TAG-arm64 = the two images
#   .cache/images/webhook   the same for /akv-env-webhook (ENTRYPOINT /akv-env-webhook, CMD serve)
# TAG is the workspace version (Cargo.toml) unless --tag says otherwise.
# Usage: scripts/build-images.sh [--skip-build] [--arch amd64,arm64] [--tag TAG]
#                                [--push HOST:PORT [--insecure]] [--out DIR]
#   --skip-build       reuse the binaries already built (target/<musl target>/{release,release-webhook})
#   AKV_ENV_WEBHOOK_PROFILE  cargo profile of the webhook binary (default release-webhook; see Cargo.toml)
#   --arch LIST        platforms to build (default amd64,arm64)
#   --push REGISTRY    also copy both indexes (with --all: every platform) to REGISTRY as
#                      REGISTRY/akv-env:TAG and REGISTRY/akv-env-webhook:TAG
#   --insecure         the registry speaks plain HTTP (local test registries)
# Prints "NAME oci:DIR:TAG SIZE INDEX_DIGEST" per image on stdout (the digest is the index's;
# a push keeps it: --preserve-digests).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${AKV_ENV_CACHE:-$ROOT/.cache}"
OUT="$CACHE/images"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

SCRIPT_NAME=build-images; source "$ROOT/scripts/lib.sh"

build=1 push="" tls=true arches="amd64,arm64" TAG=""
while (($#)); do
  case "$1" in
    --skip-build) build=0 ;;
    --arch) [[ $# -ge 2 ]] || die "--arch needs a list"; arches="$2"; shift ;;
    --tag) [[ $# -ge 2 ]] || die "--tag needs a value"; TAG="$2"; shift ;;
    --push) [[ $# -ge 2 ]] || die "--push needs HOST:PORT"; push="$2"; shift ;;
    --insecure) tls=false ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a directory"; OUT="$2"; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
for tool in umoci skopeo python3; do
  command -v "$tool" >/dev/null || die "$tool not found: run scripts/setup.sh"
done
IFS=, read -r -a ARCHES <<<"$arches"
for arch in "${ARCHES[@]}"; do
  case "$arch" in amd64|arm64) ;; *) die "unknown architecture $arch (amd64, arm64)" ;; esac
done

# The tag defaults to the workspace version ([workspace.package] version in Cargo.toml).
if [[ -z "$TAG" ]]; then
  TAG="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)"
  [[ -n "$TAG" ]] || die "no [workspace.package] version in Cargo.toml"
fi

target_of() { case "$1" in amd64) echo x86_64-unknown-linux-musl ;; arm64) echo aarch64-unknown-linux-musl ;; esac; }
# binary ARCH NAME: where scripts/build-static.sh leaves it.
binary() {
  local profile=release
  [[ "$2" == akv-env-webhook ]] && profile="${AKV_ENV_WEBHOOK_PROFILE:-release-webhook}"
  echo "$TARGET_DIR/$(target_of "$1")/$profile/$2"
}

if ((build)); then
  for arch in "${ARCHES[@]}"; do
    for bin in akv-env akv-env-webhook; do
      log "building $bin for linux/$arch"
      scripts/build-static.sh "$arch" "$bin" >/dev/null
    done
  done
fi

# image LAYOUT ARCH BINARY ENTRY [CMD]: one image (one layer) tagged TAG-ARCH in LAYOUT.
image() {
  local layout="$1" arch="$2" binary="$3" entry="$4" cmd="${5:-}"
  [[ -f "$binary" ]] || die "$binary not found (build it, or drop --skip-build)"
  check_static "$binary" "$arch"
  local ref="$layout:$TAG-$arch" bundle
  bundle="$(mktemp -d)"
  umoci new --image "$ref"
  # --rootless: files are owned by root in the image whoever runs this; no real root needed.
  umoci unpack --rootless --image "$ref" "$bundle"
  install -m 0755 "$binary" "$bundle/rootfs$entry"
  umoci repack --image "$ref" "$bundle"
  rm -rf "$bundle"
  local args=(--os linux --architecture "$arch" --config.entrypoint "$entry"
    --config.user 65532:65532 --config.workingdir /
    --config.label "org.opencontainers.image.version=$TAG"
    --config.label "org.opencontainers.image.source=https://github.com/akv-env/akv-env")
  [[ -n "$cmd" ]] && args+=(--config.cmd "$cmd")
  umoci config --image "$ref" "${args[@]}"
}

# index LAYOUT: an OCI image index of the TAG-ARCH manifests, with their platforms, tagged TAG.
index() {
  python3 - "$1" "$TAG" "${ARCHES[@]}" <<'PY'
import hashlib, json, os, sys
layout, tag, arches = sys.argv[1], sys.argv[2], sys.argv[3:]
REF = "org.opencontainers.image.ref.name"
path = os.path.join(layout, "index.json")
top = json.load(open(path))
by_tag = {m.get("annotations", {}).get(REF): m for m in top["manifests"]}
entries = []
for arch in arches:
    m = dict(by_tag[f"{tag}-{arch}"])
    m.pop("annotations", None)
    m["platform"] = {"architecture": arch, "os": "linux"}
    if arch == "arm64":
        m["platform"]["variant"] = "v8"
    entries.append(m)
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": entries,
    "annotations": {"org.opencontainers.image.version": tag},
}
blob = json.dumps(index, separators=(",", ":")).encode()
digest = hashlib.sha256(blob).hexdigest()
with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
    f.write(blob)
top["manifests"] = [m for m in top["manifests"] if m.get("annotations", {}).get(REF) != tag]
top["manifests"].append({
    "mediaType": index["mediaType"], "digest": f"sha256:{digest}", "size": len(blob),
    "annotations": {REF: tag},
})
with open(path, "w") as f:
    json.dump(top, f)
print(f"sha256:{digest}")
PY
}

# assemble NAME BINARY ENTRY [CMD]: the layout OUT/NAME holding one image per arch and the index.
assemble() {
  local name="$1" bin="$2" entry="$3" cmd="${4:-}" layout="$OUT/$1" arch digest
  rm -rf "$layout"
  mkdir -p "$OUT"
  umoci init --layout "$layout"
  for arch in "${ARCHES[@]}"; do
    image "$layout" "$arch" "$(binary "$arch" "$bin")" "$entry" "$cmd"
  done
  umoci gc --layout "$layout"
  digest="$(index "$layout")"
  printf '%s oci:%s:%s %s %s\n' "$name" "$layout" "$TAG" "$(du -sh "$layout/blobs" | cut -f1)" "$digest"
}

assemble injector akv-env /akv-env
assemble webhook akv-env-webhook /akv-env-webhook serve

if [[ -n "$push" ]]; then
  for pair in injector:akv-env webhook:akv-env-webhook; do
    log "pushing ${pair#*:}:$TAG (${ARCHES[*]}) to $push"
    skopeo copy -q --all --preserve-digests --dest-tls-verify="$tls" \
      "oci:$OUT/${pair%%:*}:$TAG" "docker://$push/${pair#*:}:$TAG" >&2
  done
fi
