#!/usr/bin/env bash
# Set up a machine from nothing and run the embedded demo (CPU only, no model download):
# grammar-constrained tool calls from a tiny random-weight model.
#
#   bash scripts/demo.sh [demo options]   (see: python -m functionary demo --help)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec "$PY" -m functionary demo "$@"
