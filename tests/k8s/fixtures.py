"""pytest fixtures of the Kubernetes tests (imported by tests/conftest.py):

- `kube_cluster` (session): a started `KubeCluster`; skipped only on a developer machine without the binaries
  (CI builds them: .ci/run runs tools/k8s/build.sh), failed in CI (`CI` set) so a missing build cannot pass.
- `kube_namespace` (per test): a fresh namespace's name, deleted afterwards.
- `node_agent` (per test): a factory `node_agent(nodes=None, **kwargs) -> NodeAgent`, started, stopped after the
  test (default nodes: node-a 127.0.1.1, node-b 127.0.1.2).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.harness import wait_for
from tests.k8s.agent import NodeAgent
from tests.k8s.cluster import BIN_DIR, KubeCluster, has_default_token, missing_binaries

DEFAULT_NODES = {"node-a": "127.0.1.1", "node-b": "127.0.1.2"}


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    why = missing_binaries(BIN_DIR)
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    with KubeCluster(BIN_DIR, tmp_path_factory.mktemp("kube")) as cluster:
        yield cluster


@pytest.fixture
def kube_namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    with kube_cluster.api_client() as api:
        core = client.CoreV1Api(api)
        namespace: Any = {"metadata": {"name": name}}
        core.create_namespace(namespace)
        # Until the controller-manager gives it a token, the ServiceAccount admission refuses every pod.
        wait_for(lambda: has_default_token(core, name), 30, f"namespace {name}'s default service account token")
        yield name
        # Background: the namespace controller deletes what is left (the agents have stopped by now).
        core.delete_namespace(name)


NodeAgentFactory = Callable[..., NodeAgent]


@pytest.fixture
def node_agent(kube_cluster: KubeCluster, tmp_path: Path) -> Iterator[NodeAgentFactory]:
    agents: list[NodeAgent] = []

    def start(nodes: dict[str, str] | None = None, **kwargs: Any) -> NodeAgent:
        root = tmp_path / f"agent{len(agents)}"
        agent = NodeAgent(kube_cluster.kubeconfig, nodes or DEFAULT_NODES, root, sys.executable, **kwargs)
        agents.append(agent)
        return agent.start()

    yield start
    for agent in reversed(agents):
        agent.stop()
