"""The real-kubelet tier: `openrr render-server` in a real container (containerd + runc, the kubelet built from
Debian's source), scheduled by the real scheduler onto the real node, Ready by the kubelet's own HTTPS probe.
No stand-in here. The image is small and reaches this machine's Python, venv and Mesa through read-only hostPath
volumes (tests/k8s/kubelet.py says why)."""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client

from openrr import tls
from openrr.hosting.kube_pod import STS_KEY, PodTemplate, new_pod_name, pod_secret, render_pod
from openrr.render.control import HEALTH_PATH
from tests.harness import free_port
from tests.k8s.cluster import KubeCluster
from tests.k8s.kubelet import (
    ADDRESS,
    NODE,
    RENDER_REF,
    RealNode,
    host_runtime_volumes,
    kubelet_unavailable,
    render_server_image,
)
from tests.k8s.waits import condition, pod_named, watch_until

pytestmark = pytest.mark.kubelet

READY_S = 120
"""create -> Ready of a render server in a container (Python imports of the render stack from a hostPath included;
a few seconds alone); 2 shared cores with other suites."""


@pytest.fixture(scope="module")
def real_node(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNode]:
    why = kubelet_unavailable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    t0 = time.monotonic()
    node = RealNode(kube_cluster, tmp_path_factory.mktemp("node")).start()
    print(f"real node Ready in {time.monotonic() - t0:.1f} s")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def core(kube_cluster: KubeCluster) -> Iterator[Any]:
    with kube_cluster.api_client() as api:
        yield client.CoreV1Api(api)


def _port_pair() -> int:
    while True:
        port = free_port()
        if port < 65535 and _free(port + 1):
            return port


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind((ADDRESS, port))
        except OSError:
            return False
    return True


def test_render_server_runs_in_a_real_container_to_ready(
    core: Any, kube_namespace: str, real_node: RealNode, tmp_path: Path
) -> None:
    real_node.import_image(render_server_image(tmp_path / "img"))
    tls.ensure_local_ca(tmp_path / "tls", [ADDRESS])
    sts_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    sts_pem = sts_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    core.create_namespaced_secret(
        kube_namespace, {"metadata": {"name": "openrr-sts-public"}, "stringData": {STS_KEY: sts_pem.decode()}}
    )
    template = PodTemplate(image=RENDER_REF, stop_grace_s=2, sts_secret="openrr-sts-public")
    name, port = new_pod_name(), _port_pair()
    pod = render_pod(template, name, "Standard", port, None)
    volumes, mounts = host_runtime_volumes()
    pod["spec"]["volumes"] += volumes
    pod["spec"]["containers"][0]["volumeMounts"] += mounts
    pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": NODE}

    t0 = time.monotonic()
    created = core.create_namespaced_pod(kube_namespace, pod)
    # As the backend does: the pod's Secret (control secret, a leaf for the node's address) once it is bound.
    watch_until(**pod_named(core, kube_namespace, name), predicate=lambda p: bool(p and p["spec"].get("nodeName")),
                timeout=READY_S, what="bound")  # fmt: skip
    chain, key = tls.issue_server_certificate(tmp_path / "tls", [ADDRESS])
    core.create_namespaced_secret(kube_namespace, pod_secret(name, created.metadata.uid, "s" * 32, chain, key))
    ready = watch_until(
        **pod_named(core, kube_namespace, name),
        predicate=lambda p: condition(p, "Ready") == "True" or _phase(p) in ("Failed", "Succeeded"),
        timeout=READY_S, what="render pod Ready (kubelet's probe)",
    )  # fmt: skip
    create_to_ready = time.monotonic() - t0
    assert ready is not None and condition(ready, "Ready") == "True", real_node.container_log(kube_namespace, name)
    assert ready["spec"]["nodeName"] == NODE
    print(f"real kubelet: render pod create -> Ready {create_to_ready:.2f} s")
    cid = ready["status"]["containerStatuses"][0]["containerID"]
    assert cid.startswith("containerd://")

    # Our own request, trusting only the local CA, reaches the server in the container on the node's address.
    r = httpx.get(
        f"https://{ADDRESS}:{port}{HEALTH_PATH}",
        verify=ssl.create_default_context(cafile=tmp_path / "tls" / tls.CA_FILE),
        timeout=10,
    )
    assert r.status_code == 200, r.text

    t1 = time.monotonic()
    core.delete_namespaced_pod(name, kube_namespace)
    watch_until(**pod_named(core, kube_namespace, name), predicate=lambda p: p is None, timeout=READY_S, what="gone")
    print(f"real kubelet: delete -> gone {time.monotonic() - t1:.2f} s (grace {template.stop_grace_s} s)")
    assert _free(port), "the server's port is still bound after its pod is gone"


def _phase(pod: dict[str, Any] | None) -> str | None:
    phase = (pod or {}).get("status", {}).get("phase")
    return str(phase) if phase else None
