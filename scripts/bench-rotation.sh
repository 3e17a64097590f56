#!/usr/bin/env bash
# Pod-level cost of supervisor mode (`akv-env --restart-on-change`): the supervisor's RSS while
# idle between checks, and its CPU time per check, against the local Key Vault on loopback.
# Usage: scripts/bench-rotation.sh [SECONDS] [OBJECTS] [BIN]
#   SECONDS: how long to let it check (default 60), checking every 1 s (±10 %)
#   OBJECTS: distinct secrets the program uses (default 5)
#   BIN:     the injector to measure (default: the release build, target/release/akv-env)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_TO_RUN="${1:-60}"
OBJECTS="${2:-5}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

if [ -z "${3:-}" ]; then
  cargo build --release --locked -p akv-env >&2
  BIN="$ROOT/target/release/akv-env"
else
  BIN="$3"
fi
cargo build --locked -p fake-keyvault >&2
FAKE="$ROOT/target/debug/fake-keyvault"

{
  echo "identities: [ { client_id: bench, client_secret: bench-secret } ]"
  echo "vaults:"
  echo "  benchvault:"
  echo "    secrets:"
  for i in $(seq 0 $((OBJECTS - 1))); do echo "      s$i: { value: \"value-$i\" }"; done
} > "$WORK/seed.yaml"
"$FAKE" --listen 127.0.0.1:0 --secrets "$WORK/seed.yaml" --ca-out "$WORK/ca.pem" \
  >"$WORK/fake.out" 2>"$WORK/fake.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q '^ca=' "$WORK/fake.out" 2>/dev/null && break; sleep 0.1; done
ADDR="$(sed -n 's/^https_addr=//p' "$WORK/fake.out")"
TENANT="$(sed -n 's/^tenant=//p' "$WORK/fake.out")"

ENV=(PATH=/usr/bin:/bin AKV_ENV_DEFAULT_VAULT=benchvault
  "AZURE_TENANT_ID=$TENANT" AZURE_CLIENT_ID=bench AZURE_CLIENT_SECRET=bench-secret)
for i in $(seq 0 $((OBJECTS - 1))); do ENV+=("S$i=s$i@azurekeyvault"); done
# Where the token goes is flags only (the webhook writes them from the pod spec).
env -i "${ENV[@]}" "$BIN" --ca-file "$WORK/ca.pem" \
  --resolve "benchvault.vault.azure.net=$ADDR,login.test=$ADDR" --authority-host https://login.test \
  --restart-on-change 1s -- sleep $((SECONDS_TO_RUN + 30)) \
  2>"$WORK/sup.err" &
SUP=$!
PIDS+=("$SUP")
sleep 3   # resolution, exec, first check
if ! kill -0 "$SUP" 2>/dev/null; then
  echo "the supervisor ended:" >&2; cat "$WORK/sup.err" >&2; exit 1
fi
ticks() { awk '{print $14 + $15}' "/proc/$SUP/stat"; }
HZ="$(getconf CLK_TCK)"
checks() { grep -c '/versions' "$WORK/fake.err" || true; }
T0="$(ticks)"; C0="$(checks)"
RSS_MAX=0
for _ in $(seq "$SECONDS_TO_RUN"); do
  sleep 1
  RSS="$(awk '/^VmRSS/ {print $2}' "/proc/$SUP/status")"
  [ "$RSS" -gt "$RSS_MAX" ] && RSS_MAX="$RSS"
done
T1="$(ticks)"; C1="$(checks)"
ROUNDS=$(((C1 - C0) / OBJECTS))
echo "binary: $BIN ($(stat -c %s "$BIN") bytes)"
echo "objects watched: $OBJECTS; check rounds in ${SECONDS_TO_RUN}s: $ROUNDS (version-list requests: $((C1 - C0)))"
echo "supervisor RSS: last ${RSS} KiB, highest ${RSS_MAX} KiB"
awk -v t="$((T1 - T0))" -v hz="$HZ" -v r="$ROUNDS" -v o="$OBJECTS" 'BEGIN {
  cpu = t / hz * 1000
  printf "supervisor CPU: %.0f ms in all; %.2f ms per check round, %.2f ms per object checked\n", cpu, cpu / r, cpu / (r * o)
}'
if grep -q 'new version\|could not check' "$WORK/sup.err"; then
  echo "unexpected supervisor log:" >&2; cat "$WORK/sup.err" >&2; exit 1
fi
