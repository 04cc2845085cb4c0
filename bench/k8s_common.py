"""What the Kubernetes benchmarks share: a real control plane with fake nodes (tests/k8s), `openrr serve --hosting
kubernetes` replicas pointed at it, and its render pods (the ledger of every pod a run saw is tests/k8s/ledger.py).

The cluster is tests/k8s/cluster.py's KubeCluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler
v1.20.2 from /var/cache/openrr/k8s-1.20.2/bin) and tests/k8s/agent.py's NodeAgent, the one stand-in: it plays the
kubelet for fake nodes on loopback addresses and runs the real `openrr render-server` for each pod bound to them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.harness import Service, free_port, wait_for
from tests.k8s.agent import NodeAgent
from tests.k8s.cluster import BIN_DIR, NODE_GRACE_S, KubeCluster, has_default_token, missing_binaries

from bench.common import stop_service
from openrr.hosting.kube_pod import SELECTOR, SESSION_ID_ANNOTATION, STATE_LABEL, WARM

NAMESPACE = "openrr-bench"
NODES = {"bench-node-a": "127.0.1.21", "bench-node-b": "127.0.1.22"}
"""Addresses no test uses (tests take 127.0.1.1 and .2), so a test run beside the bench cannot clash on a port."""
PORT_RANGE = (33000, 33999)
"""500 pairs, outside the tests' 31000-31999."""


@dataclass
class KubeEnv:
    cluster: KubeCluster
    agent: NodeAgent
    core: Any
    namespace: str = NAMESPACE


@contextmanager
def kube_env(work: Path, *, max_pods: int = 110, node_grace_s: int = NODE_GRACE_S) -> Iterator[KubeEnv]:
    """A started cluster, its bench namespace (with its default service account's token) and the node agent."""
    why = missing_binaries(BIN_DIR)
    if why is not None:
        raise SystemExit(why)
    with KubeCluster(BIN_DIR, work / "kube", node_grace_s=node_grace_s) as cluster:
        api = cluster.api_client()
        core = client.CoreV1Api(api)
        namespace: Any = {"metadata": {"name": NAMESPACE}}
        core.create_namespace(namespace)
        wait_for(lambda: has_default_token(core, NAMESPACE), 60, "the bench namespace's service account token")
        agent = NodeAgent(cluster.kubeconfig, NODES, work / "agent", sys.executable, max_pods=max_pods)
        try:
            agent.start(timeout=60)
            yield KubeEnv(cluster, agent, core)
        finally:
            agent.stop()
            api.close()  # type: ignore[no-untyped-call]


def kube_env_vars() -> dict[str, str]:
    return {"OPENRR_KUBE_NAMESPACE": NAMESPACE, "OPENRR_KUBE_PORT_RANGE": f"[{PORT_RANGE[0]}, {PORT_RANGE[1]}]"}


@dataclass
class Replica(Service):
    """`openrr serve` whose local CA may lie outside its data directory (--ca-dir, shared by replicas)."""

    ca_dir: Path | None = None

    @property
    def cert(self) -> str:
        return str((self.ca_dir or self.data_dir / "tls") / "cert.pem")


@contextmanager
def k8s_service(env: KubeEnv, data_dir: Path, args: list[str], *, extra_env: dict[str, str] | None = None,
                ca_dir: Path | None = None, account: tuple[str, str] | None = None) -> Iterator[Replica]:  # fmt: skip
    """`openrr serve --hosting kubernetes` on the bench cluster (the service inherits this process's environment,
    which carries the OPENRR_KUBE_* settings); stopped however the run ends."""
    saved = dict(os.environ)
    os.environ.update(kube_env_vars() | (extra_env or {}))
    flags = ["--hosting", "kubernetes", "--kubeconfig", str(env.cluster.kubeconfig), *args]
    if ca_dir is not None:
        flags += ["--ca-dir", str(ca_dir)]
    svc = Replica(data_dir, free_port(), flags, ca_dir=ca_dir)
    if account is not None:
        svc.account_id, svc.key = account
    try:
        svc.start()
        yield svc
    finally:
        os.environ.clear()
        os.environ.update(saved)
        stop_service(svc, data_dir)


# --- render pods ------------------------------------------------------------------------------------------


def render_pods(env: KubeEnv) -> list[Any]:
    return list(env.core.list_namespaced_pod(env.namespace, label_selector=SELECTOR).items)


def ready_warm_pods(env: KubeEnv) -> list[str]:
    """Names of warm render pods that are Ready and not being deleted."""
    return [
        p.metadata.name
        for p in render_pods(env)
        if (p.metadata.labels or {}).get(STATE_LABEL) == WARM
        and p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
    ]


def pod_gone(env: KubeEnv, name: str) -> bool:
    return all(p.metadata.name != name for p in render_pods(env))


def pod_of_session(env: KubeEnv, session_id: str) -> str | None:
    for p in render_pods(env):
        if (p.metadata.annotations or {}).get(SESSION_ID_ANNOTATION) == session_id:
            return str(p.metadata.name)
    return None


def delete_all_render_pods(env: KubeEnv) -> None:
    """Pods outlive the control plane (a shared backend's shutdown leaves them): the bench removes its own."""
    for p in render_pods(env):
        try:
            env.core.delete_namespaced_pod(p.metadata.name, env.namespace, grace_period_seconds=0)
        except client.ApiException as e:
            if e.status != 404:
                raise
    wait_for(lambda: not render_pods(env), 60, "every render pod to be gone", 0.2)
