#!/usr/bin/env bash
# Set up a machine from nothing and run the end-to-end demo (CPU only, no model download):
# a tiny random-weight model with the real Llama 3 tokenizer behind the OpenAI-compatible
# server (vLLM, --enable-grammar-sampling), queried with the openai client; every tool call
# is printed and checked against its schema (exit status 1 if any is invalid).
#
#   bash scripts/demo.sh [demo options]   (see: python -m functionary demo --help)
#
# The server needs vLLM, installed into its own venv (.venv-vllm, scripts/setup.sh's VLLM=1
# branch; a few minutes the first time).  If that set-up fails, the demo runs in the default
# venv and falls back to the in-process Hugging Face backend (it says so).
set -euo pipefail
cd "$(dirname "$0")/.."
if VLLM=1 bash -c 'set -euo pipefail; source scripts/setup.sh'; then
    PY="${VLLM_VENV:-.venv-vllm}/bin/python"
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
else
    echo "== the vLLM set-up failed (see above); using the default venv" >&2
    source scripts/setup.sh
fi
exec "$PY" -m functionary demo "$@"
