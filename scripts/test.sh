#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then runs every test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
export AKV_ENV_TEST_PYTHON="${AKV_ENV_CACHE:-$ROOT/.cache}/venv/bin/python"
cargo nextest run --workspace --all-targets --no-fail-fast "$@"
# The arm64 injector (static aarch64 musl build) through the same integration tests, run by
# qemu-user against the local Key Vault. Skipped only when arguments narrow the run above.
if (($# == 0)); then
  ARM64_INJECTOR="$(scripts/build-static.sh arm64 akv-env | tail -n1)"
  AKV_ENV_INJECTOR_BIN="$ARM64_INJECTOR" AKV_ENV_INJECTOR_RUNNER=qemu-aarch64-static \
    cargo nextest run -p akv-env --test injector --no-fail-fast
fi
cargo test --workspace --doc --quiet
