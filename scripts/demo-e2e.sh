#!/usr/bin/env bash
# The end-to-end story on built-in defaults, without a cluster: a Deployment as its team writes
# it is admitted by the real webhook, its pod runs under runc from a real registry, and the
# unmodified program gets its Key Vault secrets from a local Key Vault as the pod's own identity.
# Prints the manifest, the webhook's change (a diff), what the program printed (values masked),
# and where the values are not (spec, logs, disk: checked, not claimed).
# Needs root (runc). Installs what it needs first (idempotent: scripts/setup.sh).
# Usage: scripts/demo-e2e.sh [--keep] [--show-chars N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ "$(id -u)" != 0 ]]; then
  echo "demo-e2e: pods run with runc, which needs root; run as root (e.g. sudo $0)" >&2
  exit 1
fi
AKV_ENV_SETUP=demo scripts/setup.sh
echo "[demo-e2e] building the webhook, the static injector and the demo (no-op when fresh)" >&2
cargo build --quiet -p akv-env-webhook --bin akv-env-webhook
cargo build --quiet -p akv-env-e2e --bin akv-env-demo
INJECTOR="$(scripts/build-static.sh | tail -n1)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export AKV_ENV_E2E_WEBHOOK_BIN="$TARGET/debug/akv-env-webhook"
export AKV_ENV_E2E_INJECTOR_BIN="$INJECTOR"
exec "$TARGET/debug/akv-env-demo" "$@"
