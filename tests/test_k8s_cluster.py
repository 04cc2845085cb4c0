"""The Kubernetes test tooling itself (tests/k8s/): a real control plane (etcd, kube-apiserver, kube-scheduler,
kube-controller-manager v1.20.2) and the node agent. The agent is THE ONE STAND-IN: it plays the kubelet for fake
nodes on loopback addresses 127.0.1.x (tests/k8s/agent.py says what it does not do). Scheduling, node lifecycle,
garbage collection, RBAC and every API semantic here are the real ones."""

from __future__ import annotations

import base64
import secrets
import stat
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from kubernetes import client

from tests.harness import free_port
from tests.k8s.agent import NodeAgent
from tests.k8s.cluster import NODE_GRACE_S, KubeCluster, unverified_tls
from tests.k8s.fixtures import NodeAgentFactory
from tests.k8s.waits import condition, pod_named, watch_until

READY_S = 30
"""create -> Ready of a tiny pod: ~1.3 s measured alone (one 1 s probe period included); 2 shared cores, x20."""
NOT_READY_S = NODE_GRACE_S + 1 + 1 + 4
"""A silent node turns NotReady after the grace period, seen at the next 1 s monitor pass, counted from the last
renewal (1 s before the cut at most); + 4 s for a loaded 2-core machine."""

SECRET_DIR = "/var/run/test/secret"


@pytest.fixture
def core(kube_cluster: KubeCluster) -> Any:
    with kube_cluster.api_client() as api:
        yield client.CoreV1Api(api)


def _http_pod(name: str, port: int, *, secret: str | None = None, command: list[str] | None = None) -> Any:
    """A hostNetwork pod serving SECRET_DIR (the Secret `secret`) over HTTP on the node address, with a readiness
    probe on the file there: it turns Ready only once the Secret was materialised where its args say."""
    container: dict[str, Any] = {
        "name": "main",
        "image": "local/none",
        "command": command or ["python3", "-m", "http.server", "--bind", "$(NODE_IP)", str(port)],
        "args": [] if command else ["--directory", SECRET_DIR],
        "env": [{"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}],
    }
    pod: dict[str, Any] = {
        "metadata": {"name": name, "labels": {"app": "tooling-test"}},
        "spec": {
            "restartPolicy": "Never", "hostNetwork": True, "terminationGracePeriodSeconds": 5,
            "containers": [container],
        },
    }  # fmt: skip
    if secret:
        container["readinessProbe"] = {"httpGet": {"path": "/token", "port": port}, "periodSeconds": 1}
        container["volumeMounts"] = [{"name": "secret", "mountPath": SECRET_DIR, "readOnly": True}]
        # 0600 as the render pods' Secret volumes ask (the API's default is 0644, which a kubelet honours too).
        pod["spec"]["volumes"] = [{"name": "secret", "secret": {"secretName": secret, "defaultMode": 0o600}}]
    return pod


def _ready(pod: dict[str, Any] | None) -> bool:
    return condition(pod, "Ready") == "True"


def _phase(*phases: str) -> Any:
    return lambda pod: pod is not None and pod["status"].get("phase") in phases


def test_control_plane_answers_on_loopback_only_with_rbac(kube_cluster: KubeCluster, core: Any) -> None:
    with kube_cluster.api_client() as api:
        assert client.VersionApi(api).get_code().git_version.startswith("v1.20.2")
    assert {ns.metadata.name for ns in core.list_namespace().items} >= {"default", "kube-system", "kube-node-lease"}
    # RBAC: an anonymous request is refused; the admin token is the only way in.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{kube_cluster.server}/api/v1/secrets", timeout=10, context=unverified_tls())
    assert refused.value.code in (401, 403)
    # Every port any of its processes listens on is on loopback.
    for name, pid in kube_cluster.pids.items():
        listening = [c.laddr.ip for c in psutil.Process(pid).net_connections() if c.status == psutil.CONN_LISTEN]
        assert all(ip.startswith("127.") for ip in listening), (name, listening)
        assert listening or name == "kube-controller-manager", f"{name} serves nothing?"  # it has no port here


def test_a_pod_is_scheduled_runs_turns_ready_and_stops_when_deleted(
    kube_cluster: KubeCluster, core: Any, kube_namespace: str, node_agent: NodeAgentFactory
) -> None:
    agent = node_agent()
    token = secrets.token_urlsafe(24)
    core.create_namespaced_secret(kube_namespace, {"metadata": {"name": "s1"}, "stringData": {"token": token}})
    port = free_port()
    t0 = time.monotonic()
    core.create_namespaced_pod(kube_namespace, _http_pod("web", port, secret="s1"))
    pod = watch_until(**pod_named(core, kube_namespace, "web"), predicate=_ready, timeout=READY_S, what="web Ready")
    create_to_ready = time.monotonic() - t0
    assert pod is not None
    print(f"create -> Ready through the node agent: {create_to_ready:.2f} s")

    # The real scheduler bound it (the pod was created without a node) to one of the agent's nodes.
    node = pod["spec"]["nodeName"]
    assert node in agent.nodes
    scheduled = watch_until(
        core.list_namespaced_event, lambda e: e is not None, READY_S, "the scheduler's event",
        namespace=kube_namespace, field_selector="involvedObject.name=web,reason=Scheduled",
    )  # fmt: skip
    assert scheduled is not None
    assert "default-scheduler" in (scheduled.get("reportingComponent"), scheduled.get("source", {}).get("component"))
    assert pod["status"]["hostIP"] == pod["status"]["podIP"] == agent.nodes[node]
    assert pod["status"]["phase"] == "Running"

    # A real process serves the Secret from where its mount was materialised, as a 0600 file.
    proc = agent.process_of("web")
    assert proc is not None and proc.is_running()
    served = httpx.get(f"http://{agent.nodes[node]}:{port}/token", timeout=10)
    assert served.text == token
    secret_dir = Path(proc.cmdline()[proc.cmdline().index("--directory") + 1])
    assert secret_dir != Path(SECRET_DIR) and (secret_dir / "token").read_text() == token
    assert stat.S_IMODE((secret_dir / "token").stat().st_mode) == 0o600
    # ... and never shows: not in the process's command line or environment, the pod, the agent's or the
    # apiserver's logs.
    logs = agent.log_of("web") + "".join(kube_cluster.log(name) for name in kube_cluster.pids)
    for shown in (" ".join(proc.cmdline()), str(proc.environ()), str(pod), logs):
        assert token not in shown
    assert base64.b64encode(token.encode()).decode() not in str(pod)

    core.delete_namespaced_pod("web", kube_namespace)
    watch_until(**pod_named(core, kube_namespace, "web"), predicate=lambda p: p is None, timeout=20, what="web gone")
    proc.wait(5)  # the agent stopped it before it finalised the delete
    assert agent.pods_running() == []


def test_a_pod_waits_for_its_missing_secret(core: Any, kube_namespace: str, node_agent: NodeAgentFactory) -> None:
    agent = node_agent()
    port = free_port()
    core.create_namespaced_pod(kube_namespace, _http_pod("late", port, secret="s2"))

    def creating(pod: dict[str, Any] | None) -> bool:
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or [{}]
        return bool(statuses[0].get("state", {}).get("waiting", {}).get("reason") == "ContainerCreating")

    watch_until(**pod_named(core, kube_namespace, "late"), predicate=creating, timeout=READY_S, what="waiting")
    assert agent.process_of("late") is None
    # One deleted while it waits is finalised, and never starts.
    core.create_namespaced_pod(kube_namespace, _http_pod("never", free_port(), secret="s-never"))
    watch_until(**pod_named(core, kube_namespace, "never"), predicate=creating, timeout=READY_S, what="waiting")
    core.delete_namespaced_pod("never", kube_namespace)
    watch_until(**pod_named(core, kube_namespace, "never"), predicate=lambda p: p is None, timeout=READY_S,
                what="never gone")  # fmt: skip
    assert agent.process_of("never") is None
    core.create_namespaced_secret(kube_namespace, {"metadata": {"name": "s2"}, "stringData": {"token": "x"}})
    watch_until(**pod_named(core, kube_namespace, "late"), predicate=_ready, timeout=READY_S, what="late Ready")


def test_exit_codes_and_oom_kills_are_reported(core: Any, kube_namespace: str, node_agent: NodeAgentFactory) -> None:
    agent = node_agent()
    core.create_namespaced_pod(kube_namespace, _http_pod("fails", 0, command=["python3", "-c", "raise SystemExit(3)"]))
    core.create_namespaced_pod(kube_namespace, _http_pod("hog", 0, command=["sleep", "600"]))
    failed = watch_until(**pod_named(core, kube_namespace, "fails"), predicate=_phase("Failed"), timeout=READY_S,
                         what="fails Failed")  # fmt: skip
    assert failed is not None
    assert (
        failed["status"]["containerStatuses"][0]["state"]["terminated"].items()
        >= {"exitCode": 3, "reason": "Error"}.items()
    )
    watch_until(**pod_named(core, kube_namespace, "hog"), predicate=_phase("Running"), timeout=READY_S, what="hog")
    agent.oom_kill("hog")
    oom = watch_until(**pod_named(core, kube_namespace, "hog"), predicate=_phase("Failed"), timeout=READY_S,
                      what="hog OOMKilled")  # fmt: skip
    assert oom is not None
    assert (
        oom["status"]["containerStatuses"][0]["state"]["terminated"].items()
        >= {"exitCode": 137, "reason": "OOMKilled"}.items()
    )


def test_a_node_whose_agent_stops_renewing_goes_not_ready(
    core: Any, kube_namespace: str, node_agent: NodeAgentFactory
) -> None:
    agent: NodeAgent = node_agent({"node-lost": "127.0.1.9"})
    core.create_namespaced_pod(kube_namespace, _http_pod("stranded", free_port()))
    watch_until(**pod_named(core, kube_namespace, "stranded"), predicate=_ready, timeout=READY_S, what="Ready")
    proc = agent.process_of("stranded")
    assert proc is not None

    t0 = time.monotonic()
    agent.stop_renewing("node-lost")

    def lost(node: dict[str, Any] | None) -> bool:
        taints = {t["key"] for t in (node or {}).get("spec", {}).get("taints", [])}
        return condition(node, "Ready") == "Unknown" and "node.kubernetes.io/unreachable" in taints

    watch_until(core.list_node, lost, NOT_READY_S, "node-lost NotReady", field_selector="metadata.name=node-lost")
    print(f"stop renewing -> NotReady and tainted unreachable: {time.monotonic() - t0:.2f} s (grace {NODE_GRACE_S} s)")
    # The controller-manager marks its pods not Ready; the process itself, cut off, runs on (as on a real node).
    watch_until(**pod_named(core, kube_namespace, "stranded"), predicate=lambda p: not _ready(p), timeout=READY_S,
                what="stranded not Ready")  # fmt: skip
    assert proc.is_running()

    # A delete while cut off waits for the node (nobody finalises it); once reconnected, the agent acts on it.
    core.delete_namespaced_pod("stranded", kube_namespace, grace_period_seconds=1)
    agent.resume_renewing("node-lost")
    watch_until(core.list_node, lambda n: condition(n, "Ready") == "True", NOT_READY_S, "node-lost Ready again",
                field_selector="metadata.name=node-lost")  # fmt: skip
    watch_until(**pod_named(core, kube_namespace, "stranded"), predicate=lambda p: p is None, timeout=READY_S,
                what="stranded gone")  # fmt: skip
    proc.wait(5)
