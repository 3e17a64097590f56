#!/usr/bin/env bash
# Fuzzes every target in fuzz/ for a fixed time and prints execs and crashes per target.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 60 s for each target)
#
# With AddressSanitizer on a nightly toolchain (installed with rustup if missing): our crates
# have no `unsafe`, but their dependencies (ring, serde_json's and memchr's fast paths) do, and
# ASan is what catches an out-of-bounds read there. FUZZ_SANITIZER=none fuzzes on the pinned
# stable toolchain instead (libFuzzer's coverage guidance plus Rust's own checks). cargo-fuzz
# is installed into .cache/tools if missing. Crashes land in fuzz/artifacts/TARGET/; each one
# found belongs in a regression test (see RELIABILITY.md, "Hostile input").
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-60}"
shift || true
tools="$root/.cache/tools"
export PATH="$tools/bin:$PATH"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --root "$tools"
fi

cd "$root/fuzz"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

sanitizer="${FUZZ_SANITIZER:-address}"
toolchain=()
if [ "$sanitizer" != none ]; then
    nightly="${FUZZ_NIGHTLY:-nightly}"
    rustup run "$nightly" rustc --version >/dev/null 2>&1 \
        || rustup toolchain install "$nightly" --profile minimal
    toolchain=("+$nightly")
fi
flags=(-O --sanitizer "$sanitizer")
cargo "${toolchain[@]}" fuzz build "${flags[@]}"
bin="target/$(rustc -vV | sed -n 's/^host: //p')/release"
echo "sanitizer: $sanitizer ($(cargo "${toolchain[@]}" --version))"

status=0
printf '%-18s %8s %12s %10s %8s\n' target seconds execs execs/s crashes
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    before=$(find "artifacts/$target" -type f | wc -l)
    log="$(mktemp)"
    # -rss_limit_mb bounds memory per input; -timeout flags any input taking over 10 s.
    # The binary is run directly: `cargo fuzz run` would rebuild first.
    if ! "$bin/$target" "corpus/$target" "seeds/$target" \
        -artifact_prefix="artifacts/$target/" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
        -max_len=65536 >"$log" 2>&1; then
        status=1
    fi
    after=$(find "artifacts/$target" -type f | wc -l)
    execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    printf '%-18s %8s %12s %10s %8s\n' "$target" "$seconds" "${execs:-?}" \
        "$(( ${execs:-0} / (seconds > 0 ? seconds : 1) ))" "$((after - before))"
    if [ "$after" -gt "$before" ]; then
        grep -aE 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -5 | sed 's/^/    /'
    fi
    rm -f "$log"
done
exit "$status"
