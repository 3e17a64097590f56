#!/usr/bin/env bash
# Startup overhead of the injector against the local Key Vault on loopback.
# Medians over RUNS runs of `akv-env -- true` with 0, 1, 10, 100 placeholders vs plain `true`,
# the same with 20 ms added vault latency, peak RSS, and binary sizes (glibc and static musl).
# Usage: scripts/bench-injector.sh [RUNS]   (default 30; prints a Markdown table)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUNS="${1:-30}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cargo build --release --locked -p akv-env >&2
cargo build --locked -p fake-keyvault >&2
GLIBC_BIN="$ROOT/target/release/akv-env"
STATIC_BIN="$(scripts/build-static.sh 2>/dev/null | tail -1)"
FAKE="$ROOT/target/debug/fake-keyvault"
BIN="$STATIC_BIN"   # what pods run

{
  echo "identities: [ { client_id: bench, client_secret: bench-secret } ]"
  echo "vaults:"
  echo "  benchvault:"
  echo "    secrets:"
  for i in $(seq 0 99); do echo "      s$i: { value: \"value-$i\" }"; done
} > "$WORK/seed.yaml"

# start_fake LATENCY_MS -> sets HTTPS_ADDR, TENANT, CA
start_fake() {
  local out="$WORK/fake-$1.out"
  "$FAKE" --listen 127.0.0.1:0 --secrets "$WORK/seed.yaml" --ca-out "$WORK/ca-$1.pem" --latency-ms "$1" >"$out" 2>"$WORK/fake-$1.err" &
  PIDS+=($!)
  for _ in $(seq 100); do grep -q '^ca=' "$out" 2>/dev/null && break; sleep 0.1; done
  HTTPS_ADDR="$(sed -n 's/^https_addr=//p' "$out")"
  TENANT="$(sed -n 's/^tenant=//p' "$out")"
  CA="$WORK/ca-$1.pem"
}

# env_for N -> prints env assignments for N placeholders
env_for() {
  local n="$1" i
  printf '%s\n' "PATH=/usr/bin:/bin" "AKV_ENV_DEFAULT_VAULT=benchvault" \
    "AZURE_TENANT_ID=$TENANT" "AZURE_CLIENT_ID=bench" "AZURE_CLIENT_SECRET=bench-secret"
  for ((i = 0; i < n; i++)); do echo "S$i=s$i@azurekeyvault"; done
}

# flags -> the injector's trust flags, as the webhook derives them from a pod spec (the
# environment never sets them): the fake's CA, fixed addresses, the test authority
flags() {
  printf '%s\n' "--ca-file=$CA" \
    "--resolve=benchvault.vault.azure.net=$HTTPS_ADDR,login.test=$HTTPS_ADDR" \
    "--authority-host=https://login.test"
}

# median_ms CMD... -> median wall time in ms over RUNS runs (after one checked warm-up run)
median_ms() {
  local i t0 t1
  if ! "$@" >/dev/null 2>"$WORK/last.err"; then
    echo "bench: command failed: $(cat "$WORK/last.err")" >&2; exit 1
  fi
  for ((i = 0; i < RUNS; i++)); do
    t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000))
  done | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.1f", m / 1000}'
}

peak_rss_kb() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1; }

row() { printf '| %s | %s |\n' "$1" "$2"; }

echo "| case | median ms (n=$RUNS) |"
echo "|---|---|"
row "plain \`true\`" "$(median_ms env -i /bin/true)"
start_fake 0
for n in 0 1 10 100; do
  mapfile -t E < <(env_for "$n"); mapfile -t F < <(flags)
  row "akv-env, $n placeholders" "$(median_ms env -i "${E[@]}" "$BIN" "${F[@]}" -- true)"
done
start_fake 20
for n in 1 100; do
  mapfile -t E < <(env_for "$n"); mapfile -t F < <(flags)
  row "akv-env, $n placeholders, 20 ms vault latency" "$(median_ms env -i "${E[@]}" "$BIN" "${F[@]}" -- true)"
done
echo
mapfile -t E < <(env_for 100); mapfile -t F < <(flags)
echo "Peak RSS, 100 placeholders (20 ms latency): $(peak_rss_kb env -i "${E[@]}" "$BIN" "${F[@]}" -- true) KiB (includes the final \`true\` image)"
mapfile -t E < <(env_for 0)
echo "Peak RSS, 0 placeholders: $(peak_rss_kb env -i "${E[@]}" "$BIN" "${F[@]}" -- true) KiB"
echo "Binary size: static musl $(stat -c %s "$STATIC_BIN") bytes; glibc release $(stat -c %s "$GLIBC_BIN") bytes"
