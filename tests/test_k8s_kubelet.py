"""The real-kubelet tier: `openrr render-server` in a real container (containerd + runc, the kubelet built from
Debian's source), scheduled by the real scheduler onto the real node, Ready by the kubelet's own HTTPS probe; and a
whole session of `openrr serve --hosting kubernetes` on that node. No stand-in here. The image is small and reaches
this machine's Python, venv and Mesa through read-only hostPath volumes, which the backend adds to its pods from the
`kube_extra_volumes` setting (tests/k8s/kubelet.py says why)."""

from __future__ import annotations

import os
import ssl
import statistics
import time
import uuid
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
from tests.harness import free_port, wait_status
from tests.k8s.cluster import KubeCluster
from tests.k8s.kubelet import (
    ADDRESS,
    NODE,
    RENDER_REF,
    RealNode,
    host_runtime_env,
    host_runtime_volumes,
    kubelet_unavailable,
    render_server_image,
)
from tests.k8s.pods import frame, pod_of
from tests.k8s.waits import condition, pod_named, watch_until
from tests.test_kubernetes_backend import _create, _no_pods_left, _start_to_ready, _stop, serve_k8s

__all__ = ["serve_k8s"]  # the fixture of `openrr serve --hosting kubernetes`, shared with the fake-node tier

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


@pytest.fixture(scope="module")
def render_image(real_node: RealNode, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The render-server image, imported into the node's containerd once."""
    real_node.import_image(render_server_image(tmp_path_factory.mktemp("img")))
    return RENDER_REF


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
    core: Any, kube_namespace: str, real_node: RealNode, render_image: str, tmp_path: Path
) -> None:
    tls.ensure_local_ca(tmp_path / "tls", [ADDRESS])
    sts_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    sts_pem = sts_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    core.create_namespaced_secret(
        kube_namespace, {"metadata": {"name": "openrr-sts-public"}, "stringData": {STS_KEY: sts_pem.decode()}}
    )
    template = PodTemplate(
        image=render_image, stop_grace_s=2, sts_secret="openrr-sts-public", extra_volumes=host_runtime_volumes()
    )
    name, port = new_pod_name(), _port_pair()
    pod = render_pod(template, name, "Standard", port, None)
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


def test_a_whole_session_runs_on_the_real_kubelet(
    serve_k8s: Any,
    render_image: str,
    real_node: RealNode,
    kube_cluster: KubeCluster,
    kube_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Created through the control plane's API, the session's pod runs in a container on the real node; the session
    turns Ready on the control plane's own health request, a client streams a frame from the node's address and the
    pod's host port, and stop deletes the pod."""
    monkeypatch.setenv("OPENRR_KUBE_RENDER_IMAGE", render_image)
    monkeypatch.setenv("OPENRR_KUBE_EXTRA_VOLUMES", host_runtime_env())
    svc = serve_k8s("--warm-pool", "Standard=0")
    core = client.CoreV1Api(kube_cluster.api_client())
    sid = f"kubelet-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    assert _create(svc, sid)["status"] == "Starting"
    with svc.api() as api:
        doc = wait_status(api, svc.account_id, sid, "Ready", timeout=READY_S)
    print(f"real kubelet: session create -> Ready {time.monotonic() - t0:.2f} s (first, image cold)")
    pod = pod_of(core, kube_namespace, sid)
    assert pod.spec.node_name == NODE, pod.spec.node_name
    assert pod.status.container_statuses[0].container_id.startswith("containerd://")
    assert (doc["hostname"], doc["handshakePort"]) == (ADDRESS, pod.spec.containers[0].ports[0].host_port)
    # Ready came from the reconciler's probe: the render server's /health, asked with the pod's control secret,
    # naming this session (the kubelet's probe alone makes no session Ready).
    assert f"session {sid} is Ready on" in svc.log()
    assert frame(svc, doc) == (720, 1280)
    _stop(svc, sid)
    name = pod.metadata.name
    watch_until(**pod_named(core, kube_namespace, name), predicate=lambda p: p is None, timeout=READY_S, what="gone")
    cold = [_start_to_ready(svc) for _ in range(3)]
    print(f"real kubelet: session create -> Ready p50 {statistics.median(cold):.2f} s of {[round(c, 2) for c in cold]}")
    _no_pods_left(core, kube_namespace)


def _phase(pod: dict[str, Any] | None) -> str | None:
    phase = (pod or {}).get("status", {}).get("phase")
    return str(phase) if phase else None
