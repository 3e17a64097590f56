#!/usr/bin/env bash
# Builds the static injector: x86_64-unknown-linux-musl, release profile (opt-level "z", LTO,
# strip), then checks it is a static-pie with no dynamic dependencies and prints its size.
# Needs the musl target and musl-gcc (ring compiles C): both come from scripts/setup.sh.
# Usage: scripts/build-static.sh        -> prints the binary's path on the last line
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET=x86_64-unknown-linux-musl
export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-musl-gcc}"
# Static PIE: musl's own static-pie start files, no libc.so at run time.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="${CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS:--C target-feature=+crt-static -C relocation-model=pie}"
cargo build --release --locked -p akv-env --target "$TARGET" >&2
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/$TARGET/release/akv-env"
desc="$(file -b "$BIN")"
echo "file: $desc" >&2
case "$desc" in
  *static-pie*|*"statically linked"*) ;;
  *) echo "build-static: $BIN is not statically linked" >&2; exit 1 ;;
esac
# glibc's ldd exits 0 and says "statically linked" for a static-pie; any "=>" is a library.
if ldd "$BIN" 2>&1 | grep -q '=>'; then
  echo "build-static: ldd found dynamic dependencies in $BIN" >&2; exit 1
fi
echo "ldd: $(ldd "$BIN" 2>&1 | tr -d '\t')" >&2
echo "size: $(stat -c %s "$BIN") bytes" >&2
echo "$BIN"
