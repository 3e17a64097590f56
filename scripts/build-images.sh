#!/usr/bin/env bash
# Builds the static binaries and assembles the injector and webhook images as OCI image layouts,
# without a container engine (umoci + skopeo from Debian; see images/*.Containerfile for the same
# images as Containerfiles):
#   .cache/images/injector  oci layout, tag = workspace version: /akv-env, user 65532
#   .cache/images/webhook   oci layout, tag = workspace version: /akv-env-webhook + CA bundle, user 65532
# Usage: scripts/build-images.sh [--skip-build] [--push HOST:PORT]
#   --skip-build       reuse the binaries already built (target/x86_64-unknown-linux-musl/{release,release-webhook})
#   --push HOST:PORT   also copy both to a plain-HTTP registry as HOST:PORT/akv-env{,-webhook}:TAG
# Prints "NAME oci:DIR:TAG SIZE" per image on stdout.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${AKV_ENV_CACHE:-$ROOT/.cache}"
OUT="$CACHE/images"
TARGET=x86_64-unknown-linux-musl
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# The injector ships size-optimised (release); the webhook speed-optimised (release-webhook).
INJECTOR_BIN="$TARGET_DIR/$TARGET/release/akv-env"
WEBHOOK_BIN="$TARGET_DIR/$TARGET/release-webhook/akv-env-webhook"

log() { printf '[build-images] %s\n' "$*" >&2; }
die() { printf '[build-images] error: %s\n' "$*" >&2; exit 1; }

build=1 push=""
while (($#)); do
  case "$1" in
    --skip-build) build=0 ;;
    --push) [[ $# -ge 2 ]] || die "--push needs HOST:PORT"; push="$2"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
for tool in umoci skopeo; do
  command -v "$tool" >/dev/null || die "$tool not found: run scripts/setup.sh"
done

# The tag is the workspace version ([workspace.package] version in Cargo.toml).
TAG="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)"
[[ -n "$TAG" ]] || die "no [workspace.package] version in Cargo.toml"

static_check() {
  case "$(file -b "$1")" in
    *static-pie*|*"statically linked"*) ;;
    *) die "$1 is not statically linked: $(file -b "$1")" ;;
  esac
}

if ((build)); then
  if [[ -x scripts/build-static.sh ]]; then
    log "building the injector (scripts/build-static.sh)"
    scripts/build-static.sh >/dev/null
  else
    die "scripts/build-static.sh is missing"
  fi
  log "building the webhook for $TARGET"
  CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-musl-gcc}" \
  CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="${CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS:--C target-feature=+crt-static -C relocation-model=pie}" \
    cargo build --profile release-webhook --locked -p akv-env-webhook --target "$TARGET" >&2
fi

# assemble NAME BINARY ENTRYPOINT [SRC:DEST]...: one OCI layout with one layer.
assemble() {
  local name="$1" binary="$2" entry="$3"; shift 3
  [[ -f "$binary" ]] || die "$binary not found (build it, or drop --skip-build)"
  static_check "$binary"
  local layout="$OUT/$name" bundle
  bundle="$(mktemp -d)"
  rm -rf "$layout"
  mkdir -p "$OUT"
  umoci init --layout "$layout"
  umoci new --image "$layout:$TAG"
  # --rootless: files are owned by root in the image whoever runs this; no real root needed.
  umoci unpack --rootless --image "$layout:$TAG" "$bundle"
  install -m 0755 "$binary" "$bundle/rootfs$entry"
  local extra
  for extra in "$@"; do
    install -D -m 0644 "${extra%%:*}" "$bundle/rootfs${extra#*:}"
  done
  umoci repack --image "$layout:$TAG" "$bundle"
  rm -rf "$bundle"
  umoci config --image "$layout:$TAG" --os linux --architecture amd64 \
    --config.entrypoint "$entry" --config.user 65532:65532 --config.workingdir / \
    --config.label "org.opencontainers.image.version=$TAG" \
    --config.label "org.opencontainers.image.source=https://github.com/akv-env/akv-env"
  umoci gc --layout "$layout"
  printf '%s oci:%s:%s %s\n' "$name" "$layout" "$TAG" "$(du -sh "$layout/blobs" | cut -f1)"
}

assemble injector "$INJECTOR_BIN" /akv-env
assemble webhook "$WEBHOOK_BIN" /akv-env-webhook

if [[ -n "$push" ]]; then
  for pair in injector:akv-env webhook:akv-env-webhook; do
    log "pushing ${pair#*:}:$TAG to $push"
    skopeo copy -q --dest-tls-verify=false "oci:$OUT/${pair%%:*}:$TAG" "docker://$push/${pair#*:}:$TAG" >&2
  done
fi
