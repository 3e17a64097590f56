#!/usr/bin/env bash
# The local demo on built-in defaults. Installs what it needs (idempotently), then runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
AKV_ENV_SETUP=demo scripts/setup.sh

say() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }
mask() { sed -E 's/("value":")([^"]{0,3})[^"]*"/\1\2…"/g'; }

say "How akv-env reads env values (the placeholder grammar)"
cargo run --quiet --release -p akv-placeholder --example explain

say "A local Key Vault and Entra token service (tests/fake-keyvault), seeded from examples/secrets.yaml"
cargo build --quiet --release -p fake-keyvault
WORK="$(mktemp -d)"
trap 'kill "${FKV_PID:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
target/release/fake-keyvault --listen 127.0.0.1:0 \
  --secrets tests/fake-keyvault/examples/secrets.yaml --ca-out "$WORK/ca.pem" \
  >"$WORK/ready" 2>"$WORK/fake-keyvault.log" &
FKV_PID=$!
for _ in $(seq 100); do grep -q '^ca=' "$WORK/ready" 2>/dev/null && break; sleep 0.1; done
cat "$WORK/ready"
get() { sed -n "s/^$1=//p" "$WORK/ready"; }
PORT="$(get https_addr | cut -d: -f2)"
TENANT="$(get tenant)"

say "A service principal gets a token, then reads db-password (value masked)"
TOKEN="$(curl -sS --cacert "$WORK/ca.pem" --resolve "login.microsoftonline.com:$PORT:127.0.0.1" \
  -d grant_type=client_credentials -d client_id=app-a -d client_secret=s3cret \
  --data-urlencode scope=https://vault.azure.net/.default \
  "https://login.microsoftonline.com:$PORT/$TENANT/oauth2/v2.0/token" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
curl -sS --cacert "$WORK/ca.pem" --resolve "myvault.vault.azure.net:$PORT:127.0.0.1" \
  -H "Authorization: Bearer $TOKEN" \
  "https://myvault.vault.azure.net:$PORT/secrets/db-password?api-version=2025-07-01" | mask
echo
say "Without a token, Key Vault's bearer challenge"
curl -sS -o /dev/null -D - --cacert "$WORK/ca.pem" --resolve "myvault.vault.azure.net:$PORT:127.0.0.1" \
  "https://myvault.vault.azure.net:$PORT/secrets/db-password?api-version=2025-07-01" | grep -iE '^(HTTP|www-authenticate)'
