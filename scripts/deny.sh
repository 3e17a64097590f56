#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): licenses, banned/duplicate crates, sources.
# These need no network. Advisories need the RustSec database, fetched from GitHub: run
# `scripts/deny.sh advisories` on a machine that reaches it (CI here cannot).
# cargo-deny is installed by scripts/setup.sh into .cache/tools/cargo-deny (installed here too
# when missing).
# Usage: scripts/deny.sh                 (licenses bans sources)
#        scripts/deny.sh advisories      (or any cargo-deny check names)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${AKV_ENV_CACHE:-$ROOT/.cache}"
DENY="$CACHE/tools/cargo-deny/bin/cargo-deny"
[[ -x "$DENY" ]] || AKV_ENV_SETUP=deny scripts/setup.sh
if (($#)); then checks=("$@"); else checks=(licenses bans sources); fi
"$DENY" --version >&2
"$DENY" --locked check "${checks[@]}"
