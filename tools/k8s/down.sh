#!/usr/bin/env bash
# Stop what tools/k8s/up.sh started (by recorded pid only) and remove its state directory.
# Usage: tools/k8s/down.sh [STATE_DIR]   (default /tmp/openrr-k8s)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
exec "$PY" -m tests.k8s.cluster down "${1:-/tmp/openrr-k8s}"
