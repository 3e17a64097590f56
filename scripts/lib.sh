# shellcheck shell=bash
# What the project's scripts share: log lines and failures in one format, the check that a
# release binary is static for its architecture, and readiness waits.
# Use: SCRIPT_NAME=release; source "$ROOT/scripts/lib.sh"

log() { printf '[%s] %s\n' "${SCRIPT_NAME:-akv-env}" "$*" >&2; }
die() { printf '[%s] error: %s\n' "${SCRIPT_NAME:-akv-env}" "$*" >&2; exit 1; }

# machine_of ARCH: how `file` names the machine of an amd64 | arm64 binary.
machine_of() {
  case "$1" in
    amd64) echo "x86-64" ;;
    arm64) echo "ARM aarch64" ;;
    *) die "unknown architecture $1 (amd64 or arm64)" ;;
  esac
}

# check_static BINARY ARCH: BINARY is a statically linked executable for ARCH that loads nothing
# at run time (no interpreter, no DT_NEEDED; ldd cannot read a foreign architecture).
check_static() {
  local binary="$1" machine desc
  machine="$(machine_of "$2")"
  desc="$(file -b "$binary")"
  case "$desc" in
    *static-pie*|*"statically linked"*) ;;
    *) die "$binary is not statically linked: $desc" ;;
  esac
  [[ "$desc" == *"$machine"* ]] || die "$binary is not a $machine binary: $desc"
  if LC_ALL=C readelf -l "$binary" | grep -q 'Requesting program interpreter'; then
    die "$binary asks for a program interpreter"
  fi
  if LC_ALL=C readelf -d "$binary" | grep -q '(NEEDED)'; then
    die "$binary needs shared libraries: $(readelf -d "$binary" | grep '(NEEDED)' | tr -s ' ')"
  fi
}

# wait_until TRIES COMMAND...: runs COMMAND every 0.1 s until it succeeds; fails after TRIES tries.
wait_until() {
  local tries="$1"
  shift
  for _ in $(seq "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
