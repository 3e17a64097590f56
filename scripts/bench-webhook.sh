#!/usr/bin/env bash
# Benchmarks the admission webhook on loopback against a floor measured in the same run.
#
#   floor    a bare rustls + axum server (the same TLS/HTTP stack) answering every review with a
#            fixed "allowed" response, without reading it (`akv-env-webhook floor`, hidden)
#   command  real reviews of a pod whose containers set `command` (no registry involved)
#   lookup   real reviews of a pod without `command`, its image's entrypoint a cache hit in the
#            webhook (a local docker-registry answers the first lookup only)
#
# Load generator: `oha` (crates.io), installed into .cache/tools by:
#   cargo install oha --locked --root .cache/tools
# Prints a Markdown table: requests/s, p50, p99, and the webhook's RSS under load (peak).
# Usage: scripts/bench-webhook.sh [seconds per run, default 10] [connections, default 50]
#                                 [fixed rate for the latency runs, default 1000/s]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${AKV_ENV_CACHE:-$ROOT/.cache}"
OHA="${OHA:-$CACHE/tools/bin/oha}"
DURATION="${1:-10}"
CONNECTIONS="${2:-50}"
RATE="${3:-1000}"
FLOOR_PORT=18443 HOOK_PORT=18444 HEALTH_PORT=18081

SCRIPT_NAME=bench; source "$ROOT/scripts/lib.sh"

[[ -x "$OHA" ]] || die "oha not found at $OHA; run: cargo install oha --locked --root $CACHE/tools"
for tool in jq docker-registry umoci skopeo; do
  command -v "$tool" >/dev/null || die "$tool missing (scripts/setup.sh installs it)"
done

cd "$ROOT"
# AKV_ENV_WEBHOOK_BIN: benchmark another build, e.g. the static musl one the image ships.
if [[ -n "${AKV_ENV_WEBHOOK_BIN:-}" ]]; then
  BIN="$AKV_ENV_WEBHOOK_BIN"
else
  log "building akv-env-webhook (release-webhook profile, as the image ships)"
  cargo build --profile release-webhook -q -p akv-env-webhook
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release-webhook/akv-env-webhook"
fi
log "binary: $BIN ($(file -b "$BIN" | cut -d, -f1-2))"

WORK="$(mktemp -d)"
PIDS=()
REGISTRY_GROUP=
cleanup() {
  if [[ -n $REGISTRY_GROUP ]]; then
    # The registry's temporary directory (its config's folder) is not removed when it is killed.
    local registry_dirs
    registry_dirs=$(pgrep -g "$REGISTRY_GROUP" -f 'docker-registry serve' | while read -r pid; do
      tr '\0' '\n' <"/proc/$pid/cmdline" | sed -n 3p | xargs -r dirname
    done || true)
    kill -- "-$REGISTRY_GROUP" 2>/dev/null || true
    for dir in $registry_dirs; do [[ $dir == "${TMPDIR:-/tmp}"/test-registry-* ]] && rm -rf "$dir"; done
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- a registry holding the lookup pod's image, and the serving certificate -----------------
# Made by registry-harness, as the tests make them (Debian docker-registry, umoci + skopeo, the
# test CA); it writes $WORK/env last and keeps the registry up until killed.
log "starting the benchmark registry (registry-harness)"
cargo build -q -p registry-harness --bin bench-registry
# In a process group of its own: killing bench-registry does not end its docker-registry child,
# so the cleanup ends the whole group (before, every run left a registry running).
setsid "${CARGO_TARGET_DIR:-$ROOT/target}/debug/bench-registry" "$WORK" >"$WORK/registry.log" 2>&1 &
REGISTRY_GROUP=$!
wait_until 1200 test -s "$WORK/env" || die "the benchmark registry did not start: $(cat "$WORK/registry.log")"
# shellcheck source=/dev/null
source "$WORK/env"

# --- request bodies: AdmissionReviews as the API server sends them ----------------------------
FIXTURES="$ROOT/webhook/tests/fixtures"
cp "$FIXTURES/pod-command.json" "$WORK/command.json"
jq --arg image "$IMAGE" \
  '.request.object.spec.containers[0].image = $image' "$FIXTURES/pod-no-command.json" >"$WORK/lookup.json"

# --- servers ---------------------------------------------------------------------------------
"$BIN" floor --listen "127.0.0.1:$FLOOR_PORT" --tls-cert "$WORK/tls.crt" --tls-key "$WORK/tls.key" \
  2>"$WORK/floor.log" &
FLOOR_PID=$!
PIDS+=($FLOOR_PID)
KUBECONFIG=/nonexistent RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$HOOK_PORT" \
  --health-listen "127.0.0.1:$HEALTH_PORT" --tls-cert "$WORK/tls.crt" --tls-key "$WORK/tls.key" \
  --injector-image registry.example/akv-env:bench --insecure-registry "$REGISTRY" \
  2>"$WORK/webhook.log" &
HOOK_PID=$!
PIDS+=($HOOK_PID)
wait_until 50 curl -fs "http://127.0.0.1:$HEALTH_PORT/readyz" || die "the webhook never became ready"
curl -fs "http://127.0.0.1:$HEALTH_PORT/readyz" >/dev/null || die "webhook not ready: $(cat "$WORK/webhook.log")"

# Warm the entrypoint cache, and check each body is answered as intended.
post() { curl -fsS --cacert "$WORK/ca.crt" -H 'content-type: application/json' --data-binary "@$2" "https://localhost:$1/mutate"; }
post $HOOK_PORT "$WORK/command.json" | jq -e '.response.allowed and (.response.patch | type == "string")' >/dev/null \
  || die "the command pod was not mutated"
post $HOOK_PORT "$WORK/lookup.json" | jq -e '.response.allowed and (.response.patch | type == "string")' >/dev/null \
  || die "the lookup pod was not mutated: $(post $HOOK_PORT "$WORK/lookup.json")"

# rss_peak PID: samples VmRSS every 100 ms until killed; prints the peak in MiB.
rss_sampler() {
  local pid=$1 out=$2 peak=0 rss
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    ((rss > peak)) && peak=$rss && echo "$peak" >"$out"
    sleep 0.1
  done
}

# run NAME PORT BODY PID PROTOCOL [RATE]: as fast as possible, or at RATE reviews/s in total
run() {
  local name=$1 port=$2 body=$3 pid=$4 proto=$5 rate=${6:-} flags=()
  [[ $proto == h2 ]] && flags+=(--http2)
  [[ -n $rate ]] && flags+=(-q "$rate")
  log "$name over $proto: ${DURATION}s, $CONNECTIONS connections${rate:+, $rate/s}"
  echo 0 >"$WORK/rss"
  rss_sampler "$pid" "$WORK/rss" &
  local sampler=$!
  "$OHA" -z "${DURATION}s" -c "$CONNECTIONS" --no-tui --output-format json "${flags[@]}" \
    --cacert "$WORK/ca.crt" -m POST -T application/json -D "$body" \
    "https://localhost:$port/mutate" >"$WORK/$name-$proto.json"
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  jq -r --arg name "$name" --arg proto "$proto" --arg rate "$rate" --arg rss "$(awk '{printf "%.1f", $1/1024}' "$WORK/rss")" '
    [$name, $proto + (if $rate == "" then "" else " @" + $rate + "/s" end),
     (.summary.requestsPerSec | floor | tostring),
     ((.latencyPercentiles.p50 * 1000000 | floor) / 1000 | tostring) + " ms",
     ((.latencyPercentiles.p99 * 1000000 | floor) / 1000 | tostring) + " ms",
     ((.summary.successRate * 100 | tostring) + " %"),
     ($rss + " MiB")] | "| " + join(" | ") + " |"' "$WORK/$name-$proto.json"
}

echo "| server | protocol | reviews/s | p50 | p99 | success | peak RSS |"
echo "|---|---|---|---|---|---|---|"
for proto in h1 h2; do
  run floor $FLOOR_PORT "$WORK/command.json" $FLOOR_PID $proto
  run command $HOOK_PORT "$WORK/command.json" $HOOK_PID $proto
  run lookup $HOOK_PORT "$WORK/lookup.json" $HOOK_PID $proto
done
# Latency below saturation: the same fixed rate for all three, so p50/p99 show service time
# rather than queueing.
for name in floor command lookup; do
  case $name in
    floor) run floor $FLOOR_PORT "$WORK/command.json" $FLOOR_PID h2 "$RATE" ;;
    command) run command $HOOK_PORT "$WORK/command.json" $HOOK_PID h2 "$RATE" ;;
    lookup) run lookup $HOOK_PORT "$WORK/lookup.json" $HOOK_PID h2 "$RATE" ;;
  esac
done
hits=$(curl -fs "http://127.0.0.1:$HEALTH_PORT/metrics" | awk '/^akv_env_webhook_image_cache_hits_total/ {print $2}')
misses=$(curl -fs "http://127.0.0.1:$HEALTH_PORT/metrics" | awk '/^akv_env_webhook_image_cache_misses_total/ {print $2}')
echo
echo "image cache: $hits hits, $misses misses; cores: $(nproc); load generator on the same cores"
