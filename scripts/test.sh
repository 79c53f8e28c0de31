#!/usr/bin/env bash
# Set up a machine from nothing and run the default test suite.
#
#   bash scripts/test.sh [pytest args...]
#
# The set-up (venv + install) is scripts/setup.sh, shared with scripts/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup.sh

# The C token walk is optional for users (numpy is the fallback) but not here: a build that
# silently failed would leave the default suite testing only the fallback.
if ! "$PY" -c "import grammar.index as i, sys; sys.exit(0 if i.NATIVE else 1)"; then
    echo "ERROR: grammar._native (the C token walk) was not built; is a C compiler installed?" >&2
    exit 1
fi
# Likewise the Cython builds of grammar.ir / automaton / schema (what the benchmarks measure).
if ! compiled_modules_ok; then
    echo "ERROR: the Cython builds of grammar.ir/automaton/schema are missing or stale" >&2
    exit 1
fi

# Default suite (fast: a few minutes on 2 cores).
status=0
"$PY" -m pytest -q "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "ERROR: pytest collected no tests" >&2
    exit 1
fi
[ "$status" -eq 0 ] || exit "$status"

# Heavy suites (marker `slow`): >= 200 tiny-model generations per prompt version, full
# schema corpora.  CI runs them (CI=true); locally set FULL=1.
if [ -n "${CI:-}" ] || [ "${FULL:-0}" = "1" ]; then
    echo "== slow suites"
    status=0
    "$PY" -m pytest -q -m slow "$@" || status=$?
    if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
fi

# vLLM suite (marker `vllm`): the OpenAI-compatible server, the vLLM adapters and LoRA against
# a real vLLM engine on CPU, in its own venv (.venv-vllm, set up by setup.sh's VLLM=1 branch;
# about 10 minutes on 2 cores).  CI runs it (CI=true); locally set VLLM=1.  With VLLM=1 the
# set-up above already chose .venv-vllm, so the default run included these tests.
if [ -n "${CI:-}" ] || [ "${VLLM:-0}" = "1" ]; then
    if [ "${VLLM:-0}" = "1" ]; then
        echo "== vllm suite: included in the run above ($VENV)"
    else
        echo "== vllm suite"
        VLLM=1 source scripts/setup.sh
        status=0
        "$PY" -m pytest -q -m vllm "$@" || status=$?
        if [ "$status" -eq 5 ] && [ "$#" -eq 0 ]; then
            echo "ERROR: the vllm suite collected no tests" >&2
            exit 1
        fi
        if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
    fi
fi
