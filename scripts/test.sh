#!/usr/bin/env bash
# Set up a machine from nothing and run the default test suite.
#
#   bash scripts/test.sh [pytest args...]
#
# The set-up (venv + install) is scripts/setup.sh, shared with scripts/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup.sh


status=0
"$PY" -m pytest -q "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "ERROR: pytest collected no tests" >&2
    exit 1
fi
[ "$status" -eq 0 ] || exit "$status"

# ---------------------------------------------------------------------------------------
# Heavy suites go here, each behind its marker, installed and run by its owner, e.g.
#   "$PY" -m pip install -q -e ".[vllm]" && "$PY" -m pytest -q -m vllm
# (the default run above skips vllm/gpu tests when their dependencies are absent).
# ---------------------------------------------------------------------------------------
