#!/usr/bin/env bash
# Start the test control plane by hand (the same KubeCluster the tests start): etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler on loopback, random free ports, RBAC, a static admin token.
# Usage: tools/k8s/up.sh [STATE_DIR]   (default /tmp/openrr-k8s; prints the KUBECONFIG to export)
# Fake nodes: python -m tests.k8s.agent (see tools/k8s/README.md). Stop: tools/k8s/down.sh [STATE_DIR].
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
exec "$PY" -m tests.k8s.cluster up "${1:-/tmp/openrr-k8s}"
