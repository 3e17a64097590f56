#!/usr/bin/env bash
# The local demo on built-in defaults: the whole story without a cluster (see scripts/demo-e2e.sh).
# A Deployment as its team writes it is admitted by the real webhook, its pod runs under runc from
# a real registry, and the unmodified program gets its Key Vault secrets from a local Key Vault as
# the pod's own identity. Installs what it needs first (idempotently). Needs root (runc).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$ROOT/scripts/demo-e2e.sh" "$@"
