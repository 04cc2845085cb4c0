"""Kubernetes test tooling: a real control plane (cluster.py), the node agent (agent.py), a real kubelet
(kubelet.py), fixtures (fixtures.py)."""
