#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then runs every test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
export AKV_ENV_TEST_PYTHON="${AKV_ENV_CACHE:-$ROOT/.cache}/venv/bin/python"
cargo nextest run --workspace --all-targets --no-fail-fast "$@"
cargo test --workspace --doc --quiet
