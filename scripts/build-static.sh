#!/usr/bin/env bash
# Builds one static (musl) binary of the release for one architecture, checks it is a static PIE
# for that architecture with no dynamic dependencies, and prints its size and path.
#   akv-env          release profile (opt-level "z", LTO, strip): small, it is copied into pods
#   akv-env-webhook  release-webhook profile (opt-level 3, LTO, strip): speed under load
# Compiler, linker and flags per target are in .cargo/config.toml (tools from scripts/setup.sh).
# Usage: scripts/build-static.sh [ARCH] [BINARY]
#   ARCH    amd64 (default, x86_64-unknown-linux-musl) | arm64 (aarch64-unknown-linux-musl)
#   BINARY  akv-env (default) | akv-env-webhook
# The last line of stdout is the binary's path.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SCRIPT_NAME=build-static; source "$ROOT/scripts/lib.sh"

ARCH="${1:-amd64}"
BINARY="${2:-akv-env}"
case "$ARCH" in
  amd64) TARGET=x86_64-unknown-linux-musl ;;
  arm64) TARGET=aarch64-unknown-linux-musl ;;
  *) die "unknown architecture $ARCH (amd64 or arm64)" ;;
esac
case "$BINARY" in
  akv-env) PROFILE=release ;;
  akv-env-webhook) PROFILE="${AKV_ENV_WEBHOOK_PROFILE:-release-webhook}" ;;
  *) die "unknown binary $BINARY (akv-env or akv-env-webhook)" ;;
esac

# Called from tests too, whose environment holds their own crate's CARGO_PKG_* / CARGO_MANIFEST_*
# (set by cargo test). Build scripts that watch such variables (ring's does) would rebuild the
# whole LTO binary each time the caller changes: build with one environment from everywhere.
for var in $(compgen -e); do
  case "$var" in
    CARGO_PKG_*|CARGO_MANIFEST_*|CARGO_CFG_*|CARGO_CRATE_NAME|CARGO_PRIMARY_PACKAGE|CARGO_TARGET_TMPDIR|CARGO_BIN_NAME|OUT_DIR) unset "$var" ;;
  esac
done
cargo build --profile "$PROFILE" --locked -p "$BINARY" --bin "$BINARY" --target "$TARGET" >&2
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/$TARGET/$PROFILE/$BINARY"
echo "file: $(file -b "$BIN")" >&2
check_static "$BIN" "$ARCH"
echo "size: $(stat -c %s "$BIN") bytes ($ARCH $BINARY)" >&2
echo "$BIN"
