#!/usr/bin/env bash
# Startup overhead of the injector against the local Key Vault.
# Medians over RUNS runs of `akv-env -- true` with 0, 1, 10, 100 placeholders vs plain `true`:
# on loopback (with CPU time), with 20 ms added to every vault response (`--latency-ms`), and
# behind a 20 ms round-trip relay that TCP and TLS handshakes pay too (`--rtt-ms`: the stand-in
# for `tc netem delay`, missing from this kernel). Each case also counts one run's round trips
# from the fake's connection log and access record. Then peak RSS and binary sizes.
# Usage: scripts/bench-injector.sh [RUNS]   (default 30; prints Markdown)
#   BASELINE=/path/to/older/akv-env also runs that binary and this one alternately (same fakes,
#   same moments, so a busy machine weighs on both alike) and prints both medians.
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

# start_fake NAME FAKE-FLAGS... -> sets HTTPS_ADDR, TENANT, CA, FAKE_PID, REC
start_fake() {
  local name="$1"; shift
  local out="$WORK/fake-$name.out"
  REC="$WORK/rec-$name.txt"; : >"$REC"
  "$FAKE" --listen 127.0.0.1:0 --secrets "$WORK/seed.yaml" --ca-out "$WORK/ca-$name.pem" \
    --record-out "$REC" "$@" >"$out" 2>"$WORK/fake-$name.err" &
  FAKE_PID=$!; PIDS+=($!)
  for _ in $(seq 100); do grep -q '^ca=' "$out" 2>/dev/null && break; sleep 0.1; done
  HTTPS_ADDR="$(sed -n 's/^https_addr=//p' "$out")"
  TENANT="$(sed -n 's/^tenant=//p' "$out")"
  CA="$WORK/ca-$name.pem"
}

# record -> the fake's round-trip facts since the last call (it appends one line per SIGUSR1)
record() {
  local n; n=$(wc -l <"$REC")
  kill -USR1 "$FAKE_PID"
  for _ in $(seq 200); do [ "$(wc -l <"$REC")" -gt "$n" ] && break; sleep 0.01; done
  tail -1 "$REC"
}

# counts CMD... -> round trips of one run: connections (h2 / http1), requests, tokens
counts() {
  record >/dev/null
  "$@" >/dev/null
  record | awk '{
    for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    printf "%s conn (%s vault, %s token; h2 %s, http/1.1 %s), %s vault req (%s 401), %s token req, max %s req/conn, at most %s in flight",
      f["connections"], f["vault_connections"], f["token_connections"], f["h2"], f["http1"],
      f["vault_requests"], f["vault_401"], f["token_requests"], f["max_requests_per_connection"],
      f["max_in_flight"] }'
}

# cpu_ms CMD... -> median user+system CPU ms of the process (and what it execs) over RUNS runs
cpu_ms() {
  python3 - "$RUNS" "$@" <<'PY'
import os, statistics, subprocess, sys
runs, cmd = int(sys.argv[1]), sys.argv[2:]
samples = []
for _ in range(runs):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"bench: command failed with {p.returncode}")
    samples.append((ru.ru_utime + ru.ru_stime) * 1000)
print(f"{statistics.median(samples):.1f}")
PY
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

# run_case LABEL N -> one table row: median wall time, round trips of one run
run_case() {
  mapfile -t E < <(env_for "$2"); mapfile -t F < <(flags)
  local ms rt
  ms="$(median_ms env -i "${E[@]}" "$BIN" "${F[@]}" -- true)"
  rt="$(counts env -i "${E[@]}" "$BIN" "${F[@]}" -- true)"
  printf '| %s | %s | %s |\n' "$1" "$ms" "$rt"
  LAST_MS="$ms"
}

echo "Load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| case | median ms (n=$RUNS) | round trips of one run (fake's connection log) |"
echo "|---|---|---|"
printf '| plain `true` | %s | |\n' "$(median_ms env -i /bin/true)"
start_fake loopback
declare -A LOOP
for n in 0 1 10 100; do
  run_case "akv-env, $n placeholders" "$n"; LOOP[$n]="$LAST_MS"
done
start_fake latency --latency-ms 20
for n in 1 100; do
  run_case "akv-env, $n placeholders, 20 ms added to each vault response (\`--latency-ms\`)" "$n"
done
start_fake rtt --rtt-ms 20
declare -A RTT
for n in 1 10 100; do
  run_case "akv-env, $n placeholders, 20 ms RTT relay (\`--rtt-ms\`, handshakes pay it)" "$n"
  RTT[$n]="$LAST_MS"
done
echo
for n in 1 100; do
  echo "- $n placeholders at 20 ms RTT: $(awk -v r="${RTT[$n]}" -v l="${LOOP[$n]}" 'BEGIN { printf "%.1f", (r - l) / 20 }') RTTs more than on loopback"
done
echo "- 100 placeholders at 20 ms RTT: $(awk -v a="${RTT[100]}" -v b="${RTT[1]}" 'BEGIN { printf "%.2f", a / b }')x the time of 1 placeholder"
start_fake cpu
mapfile -t F < <(flags)
mapfile -t E < <(env_for 1); CPU1="$(cpu_ms env -i "${E[@]}" "$BIN" "${F[@]}" -- true)"
mapfile -t E < <(env_for 100); CPU100="$(cpu_ms env -i "${E[@]}" "$BIN" "${F[@]}" -- true)"
echo "- CPU time on loopback (user+system, median of $RUNS): 1 placeholder $CPU1 ms, 100 placeholders $CPU100 ms ($(awk -v a="$CPU100" -v b="$CPU1" 'BEGIN { printf "%.2f", a / b }')x)"
echo
start_fake rss --latency-ms 20
mapfile -t E < <(env_for 100); mapfile -t F < <(flags)
echo "Peak RSS, 100 placeholders (20 ms latency): $(peak_rss_kb env -i "${E[@]}" "$BIN" "${F[@]}" -- true) KiB (includes the final \`true\` image)"
mapfile -t E < <(env_for 0)
echo "Peak RSS, 0 placeholders: $(peak_rss_kb env -i "${E[@]}" "$BIN" "${F[@]}" -- true) KiB"
echo "Binary size: static musl $(stat -c %s "$STATIC_BIN") bytes; glibc release $(stat -c %s "$GLIBC_BIN") bytes"

# pair_ms N CMD-PREFIX... -> "cpu ms / wall ms" medians of BASELINE and BIN, run alternately
pair_ms() {
  python3 - "$RUNS" "$BASELINE" "$BIN" "$@" <<'PY'
import os, statistics, subprocess, sys, time
runs, bins, args = int(sys.argv[1]), sys.argv[2:4], sys.argv[4:]
cut = args.index("--BIN--")
pre, post = args[:cut], args[cut + 1:]
cpu, wall = {b: [] for b in bins}, {b: [] for b in bins}
for i in range(runs + 1):
    for b in bins:
        t = time.perf_counter()
        p = subprocess.Popen(pre + [b] + post, stdout=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"bench: {b} failed")
        if i:  # the first round warms up
            wall[b].append((time.perf_counter() - t) * 1000)
            cpu[b].append((ru.ru_utime + ru.ru_stime) * 1000)
print(" | ".join(f"{statistics.median(cpu[b]):.1f} / {statistics.median(wall[b]):.1f}" for b in bins))
PY
}

if [ -n "${BASELINE:-}" ]; then
  echo
  echo "Back to back, alternating runs: \`$BASELINE\` (baseline) and \`$BIN\` (this build)"
  echo
  echo "| case | baseline: CPU ms / wall ms (median of $RUNS) | this build |"
  echo "|---|---|---|"
  start_fake pair-loop
  for n in 1 100; do
    mapfile -t E < <(env_for "$n"); mapfile -t F < <(flags)
    echo "| $n placeholders, loopback | $(pair_ms env -i "${E[@]}" --BIN-- "${F[@]}" -- true) |"
  done
  start_fake pair-rtt --rtt-ms 20
  for n in 1 100; do
    mapfile -t E < <(env_for "$n"); mapfile -t F < <(flags)
    echo "| $n placeholders, 20 ms RTT | $(pair_ms env -i "${E[@]}" --BIN-- "${F[@]}" -- true) |"
  done
fi
echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
