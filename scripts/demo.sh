#!/usr/bin/env bash
# The local demo on built-in defaults. Installs what it needs (idempotently), then runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
AKV_ENV_SETUP=demo scripts/setup.sh
echo "== How akv-env reads env values (the placeholder grammar) =="
cargo run --quiet --release -p akv-placeholder --example explain
