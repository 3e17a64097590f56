#!/bin/sh
# Thundering herd: PODS akv-env processes start at once against one local Key Vault throttled
# to LIMIT/SECONDS (Key Vault's real limit, 4000/10 per vault, scaled to this 2-core machine).
# Prints pods succeeded/failed, programs started unresolved, vault requests, 429s, token
# grants, time to the last start and the lower bound the throttle implies.
#
#   scripts/bench-herd.sh [PODS] [LIMIT/SECONDS]      default: 1000 200/1
#
# Uses the release akv-env (what pods run; AKV_ENV_BIN overrides) and the akv-env-herd driver,
# which embeds the fake Key Vault so it can count every request.
#
# Supervisor mode (issue 14): HERD_SUPERVISE_EVERY=30 HERD_OBSERVE=90 scripts/bench-herd.sh
# starts the pods with --restart-on-change=30s, waits until every program is up, watches their
# version checks for 90 s (requests, 429s, peak requests per second, pods that ended), then
# stops every pod with SIGTERM.
set -eu
cd "$(dirname "$0")/.."
PODS=${1:-1000}
THROTTLE=${2:-200/1}
TARGET=${CARGO_TARGET_DIR:-target}

if [ -z "${AKV_ENV_BIN:-}" ]; then
    cargo build --quiet --release -p akv-env --bin akv-env
    AKV_ENV_BIN=$TARGET/release/akv-env
fi
cargo build --quiet -p akv-env-reliability --bin akv-env-herd

# Each pod holds pipes and sockets; the driver needs a few descriptors per pod.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
"$TARGET/debug/akv-env-herd" --pods "$PODS" --throttle "$THROTTLE" --timeout 120s \
    --injector "$AKV_ENV_BIN"
