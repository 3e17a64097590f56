#!/usr/bin/env bash
# The release: what a platform team installs, from one command.
#   1. static akv-env and akv-env-webhook for linux/amd64 and linux/arm64 (scripts/build-static.sh)
#   2. a CycloneDX SBOM per binary (scripts/sbom.sh)
#   3. both images as OCI image indexes (linux/amd64 + linux/arm64), pushed by digest
#      (scripts/build-images.sh)
#   4. the chart, version and appVersion = VERSION, its values pinning both images to the pushed
#      index digests, `helm package`d and `helm push`ed to oci://REGISTRY/charts
# Usage: scripts/release.sh VERSION [--push REGISTRY] [--insecure] [--skip-build] [--out DIR]
#   VERSION     must be the workspace version (Cargo.toml): the binaries report it, and
#               `akv-env-webhook inject` defaults to ghcr.io/akv-env/akv-env:VERSION
#   --push R    push images to R/akv-env, R/akv-env-webhook and the chart to oci://R/charts
#               (log in first: `skopeo login`, `helm registry login`). Without it nothing leaves
#               the machine and the chart names ghcr.io/akv-env.
#   --insecure  R speaks plain HTTP (a local test registry)
#   --skip-build  reuse the binaries already built
#   --out DIR   where the artefacts go (default .cache/release/VERSION)
# AKV_ENV_WEBHOOK_PROFILE (default release-webhook) builds the webhook with another cargo profile:
# the release pipeline's own test uses release-quick (no LTO). Anything but release-webhook is
# refused with --push unless AKV_ENV_ALLOW_UNOPTIMISED_RELEASE=1, and is recorded in release.json.
# Writes to DIR: bin/<name>-linux-<arch>, sbom/<name>-linux-<arch>.cdx.json, images/ (OCI
# layouts), akv-env-VERSION.tgz, SHA256SUMS, release.json (digests and references).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SCRIPT_NAME=release; source "$ROOT/scripts/lib.sh"

VERSION="" registry="" insecure=0 build=1 out=""
while (($#)); do
  case "$1" in
    --push) [[ $# -ge 2 ]] || die "--push needs a registry (HOST[:PORT][/NAMESPACE])"; registry="$2"; shift ;;
    --insecure) insecure=1 ;;
    --skip-build) build=0 ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a directory"; out="$2"; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [[ -z "$VERSION" ]] || die "one VERSION only (got $VERSION and $1)"; VERSION="$1" ;;
  esac
  shift
done
[[ -n "$VERSION" ]] || die "usage: scripts/release.sh VERSION [--push REGISTRY] (see --help)"
workspace="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)"
[[ "$VERSION" == "$workspace" ]] \
  || die "VERSION $VERSION is not the workspace version $workspace (Cargo.toml): bump it in a commit first"
for field in version appVersion; do
  chart="$(sed -n "s/^$field: *\"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" charts/akv-env/Chart.yaml)"
  [[ "$chart" == "$VERSION" ]] || die "charts/akv-env/Chart.yaml $field is $chart, not $VERSION"
done
grep -q "^## \[$VERSION\]" CHANGELOG.md || die "CHANGELOG.md has no \"## [$VERSION]\" section"
out="${out:-${AKV_ENV_CACHE:-$ROOT/.cache}/release/$VERSION}"
webhook_profile="${AKV_ENV_WEBHOOK_PROFILE:-release-webhook}"
if [[ "$webhook_profile" != release-webhook ]]; then
  [[ -z "$registry" || "${AKV_ENV_ALLOW_UNOPTIMISED_RELEASE:-}" == 1 ]] \
    || die "AKV_ENV_WEBHOOK_PROFILE=$webhook_profile is for testing the pipeline; a pushed release builds the webhook with release-webhook (set AKV_ENV_ALLOW_UNOPTIMISED_RELEASE=1 to push anyway)"
  log "warning: the webhook is built with profile $webhook_profile, not release-webhook"
fi
export AKV_ENV_WEBHOOK_PROFILE="$webhook_profile"
repo="${registry:-ghcr.io/akv-env}"
HELM="$(scripts/tools.sh)/helm"
ARCHES=(amd64 arm64)
target_of() { case "$1" in amd64) echo x86_64-unknown-linux-musl ;; arm64) echo aarch64-unknown-linux-musl ;; esac; }

rm -rf "$out"
mkdir -p "$out/bin" "$out/sbom"
start=$SECONDS

# --- 1, 2: binaries and SBOMs ------------------------------------------------------------------
for arch in "${ARCHES[@]}"; do
  for bin in akv-env akv-env-webhook; do
    if ((build)); then
      log "building $bin for linux/$arch"
      t=$SECONDS
      path="$(scripts/build-static.sh "$arch" "$bin" | tail -n1)"
      log "built $bin linux/$arch in $((SECONDS - t)) s: $(stat -c %s "$path") bytes"
    else
      profile=release; [[ "$bin" == akv-env-webhook ]] && profile="$webhook_profile"
      path="${CARGO_TARGET_DIR:-$ROOT/target}/$(target_of "$arch")/$profile/$bin"
      [[ -f "$path" ]] || die "$path not found (drop --skip-build)"
    fi
    install -m 0755 "$path" "$out/bin/$bin-linux-$arch"
    scripts/sbom.sh "$bin" "$(target_of "$arch")" "$out/bin/$bin-linux-$arch" "$out/sbom/$bin-linux-$arch.cdx.json"
  done
done

# --- 3: image indexes --------------------------------------------------------------------------
push_args=()
if [[ -n "$registry" ]]; then
  push_args=(--push "$registry")
  ((insecure)) && push_args+=(--insecure)
fi
images="$(scripts/build-images.sh --skip-build --tag "$VERSION" --out "$out/images" "${push_args[@]}")"
printf '%s\n' "$images" >&2
digest_of() { awk -v n="$1" '$1 == n { print $4 }' <<<"$images"; }
injector_digest="$(digest_of injector)" webhook_digest="$(digest_of webhook)"
[[ "$injector_digest" == sha256:* && "$webhook_digest" == sha256:* ]] || die "no image digests from build-images.sh"

# --- 4: the chart, pinned to the digests -------------------------------------------------------
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r charts/akv-env "$work/akv-env"
python3 - "$work/akv-env/values.yaml" \
  "image.repository=$repo/akv-env-webhook" "image.digest=$webhook_digest" \
  "injector.image.repository=$repo/akv-env" "injector.image.digest=$injector_digest" <<'PY'
# Sets scalar values in values.yaml in place (comments kept): KEY.PATH=VALUE, each key existing.
import json, re, sys
path, sets = sys.argv[1], sys.argv[2:]
lines = open(path).read().split("\n")
for s in sets:
    key, value = s.split("=", 1)
    parts, start, indent = key.split("."), 0, 0
    for depth, part in enumerate(parts):
        pat = re.compile(rf"^{' ' * indent}{re.escape(part)}:(\s|$)")
        for i in range(start, len(lines)):
            if pat.match(lines[i]):
                start = i + 1
                break
            if i >= start and lines[i].strip() and not lines[i].lstrip().startswith("#") \
                    and len(lines[i]) - len(lines[i].lstrip()) < indent:
                sys.exit(f"values.yaml: no {key}")
        else:
            sys.exit(f"values.yaml: no {key}")
        indent += 2
    i = start - 1
    lines[i] = re.sub(r":.*$", ": " + json.dumps(value), lines[i])
open(path, "w").write("\n".join(lines))
PY
"$HELM" lint --strict "$work/akv-env" >&2
"$HELM" package "$work/akv-env" --version "$VERSION" --app-version "$VERSION" -d "$out" >&2
chart_tgz="$out/akv-env-$VERSION.tgz"
[[ -f "$chart_tgz" ]] || die "helm package wrote no $chart_tgz"
chart_ref="" chart_digest=""
if [[ -n "$registry" ]]; then
  plain=(); ((insecure)) && plain=(--plain-http)
  log "pushing the chart to oci://$registry/charts"
  pushed="$("$HELM" push "$chart_tgz" "oci://$registry/charts" "${plain[@]}" 2>&1)" || die "helm push failed: $pushed"
  printf '%s\n' "$pushed" >&2
  chart_digest="$(sed -n 's/^Digest: *//p' <<<"$pushed" | head -n1)"
  chart_ref="oci://$registry/charts/akv-env"
fi

(cd "$out" && sha256sum bin/* sbom/* "akv-env-$VERSION.tgz" > SHA256SUMS)
python3 - "$out/release.json" <<PY
import json, sys
json.dump({
  "version": "$VERSION",
  "webhook_profile": "$webhook_profile",
  "images": {
    "injector": {"repository": "$repo/akv-env", "tag": "$VERSION", "digest": "$injector_digest"},
    "webhook": {"repository": "$repo/akv-env-webhook", "tag": "$VERSION", "digest": "$webhook_digest"},
  },
  "platforms": ["linux/amd64", "linux/arm64"],
  "chart": {"package": "akv-env-$VERSION.tgz", "reference": "$chart_ref", "digest": "$chart_digest"},
}, open(sys.argv[1], "w"), indent=2)
PY
log "release $VERSION in $out ($((SECONDS - start)) s)"
cat "$out/release.json"
