"""Two `openrr serve --hosting kubernetes` replicas on one real PostgreSQL, against a real Kubernetes control plane:
the official SDK's lifecycle with its requests alternating between the replicas, a replica killed with SIGKILL while
sessions start and stop, and both replicas killed and restarted.

The replicas share the database, the local CA (--ca-dir) and the secrets key (tests/replicas.py). The cluster is
real: etcd, kube-apiserver, kube-scheduler and kube-controller-manager (tests/k8s/cluster.py). THE ONE STAND-IN is
tests/k8s/agent.py, which plays the kubelet for two fake nodes and runs the real `openrr render-server` for each
pod the real scheduler binds to them; clients stream frames from a pod's node address and host port.

On this backend a render pod outlives the replica that made it: a dead replica's sessions are taken over by the
other (their pods kept, never a second one made), and restarted replicas adopt the pods they find.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from openrr.hosting.kube_pod import SESSION_ID_ANNOTATION, STATE_LABEL, WARM
from tests.harness import openrr, session_doc, wait_for, wait_status
from tests.k8s.agent import NodeAgent
from tests.k8s.cluster import KubeCluster
from tests.k8s.fixtures import NodeAgentFactory
from tests.k8s.ledger import PodLedger
from tests.k8s.pods import frame, pod_of, render_pods
from tests.k8s.waits import pod_named, watch_until
from tests.postgres import fresh_database, pg_url
from tests.replicas import Pair, Replica, alternating_sdk, replicas, sdk_get_update_list_stop

__all__ = ["pg_url"]  # a fixture, used by name

API = {"api-version": "2021-01-01"}
ADDRESSES = ("127.0.1.31", "127.0.1.32")
"""Node addresses and ports (below) no other test or bench uses, so that a run beside them cannot clash on a port."""
PORTS = (34000, 34999)
TAKEOVER_BOUND_S = 15.0
"""The issue's goal: session_lease_s (10 s) + one reconcile interval (1 s), plus the handling task's store writes."""
START_S = 90
"""A cold pod: schedule, Secret, `python -m openrr render-server` (imports, EGL context) on two shared cores."""
LIVE = ("Starting", "Ready")
FRAME = (720, 1280)


def nodes(tag: str) -> dict[str, str]:
    """Two fake nodes with names of their own: the previous test's agent deleted its Nodes (and their Leases go with
    them, collected in the background), so no test starts on a name still being cleaned up."""
    return {f"rep-{tag}-{i}": ip for i, ip in enumerate(ADDRESSES)}


@dataclass
class KubeReplicas:
    """Replicas A and B, the node agent, and a ledger of every render pod the test saw."""

    pair: Pair
    agent: NodeAgent
    core: Any
    ns: str
    ledger: PodLedger

    def pods(self) -> list[Any]:
        return render_pods(self.core, self.ns)

    def pod(self, sid: str) -> Any:
        return pod_of(self.core, self.ns, sid)

    def deleted(self, names: list[str]) -> bool:
        """Each pod is gone or being deleted (its deletion requested: the replica's part is done)."""
        by_name = {p.metadata.name: p for p in self.pods()}
        return all(n not in by_name or by_name[n].metadata.deletion_timestamp is not None for n in names)

    def assert_no_orphans(self) -> None:
        """No render pod (not being deleted) without a live session, no live session without exactly one pod, and
        no pod, session or endpoint handed out twice over the whole test."""
        live = {sid for sid, row in self.pair.rows().items() if row["status"] in LIVE}
        claimed = {p.metadata.name: (p.metadata.annotations or {}).get(SESSION_ID_ANNOTATION) for p in self.pods()
                   if p.metadata.deletion_timestamp is None and p.metadata.labels.get(STATE_LABEL) != WARM}  # fmt: skip
        orphans = [name for name, sid in claimed.items() if sid not in live]
        assert not orphans, f"render pods without a live session: {orphans}"
        assert sorted(s for s in claimed.values() if s is not None) == sorted(live), (claimed, live)
        assert all(not found for found in self.ledger.duplicates().values()), self.ledger.duplicates()

    def all_stopped(self, by: Replica, sids: list[str]) -> None:
        for sid in sids:
            stop(by, sid)
        wait_for(lambda: not self.pods(), 30, "every render pod deleted", 0.2)


@pytest.fixture
def kube_replicas(
    tmp_path: Path,
    pg_url: str,
    kube_cluster: KubeCluster,
    kube_namespace: str,
    node_agent: NodeAgentFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[int], KubeReplicas]]:
    """`start(warm)`: the node agent on two fresh nodes, then replicas A and B (warm pool `warm`) on a fresh
    database, whose account may hold several live sessions; stopped after the test."""
    monkeypatch.setenv("OPENRR_KUBE_NAMESPACE", kube_namespace)
    monkeypatch.setenv("OPENRR_KUBE_PORT_RANGE", f"[{PORTS[0]}, {PORTS[1]}]")
    # What is tested is that a create with a free warm pod answers Ready (how fast: bench/k8s_start.py); the first
    # claim on a replica opens its connections, on two shared cores: a generous wait keeps the answer Ready.
    monkeypatch.setenv("OPENRR_FAST_START_WAIT_S", "20")
    with ExitStack() as stack:

        def start(warm: int) -> KubeReplicas:
            agent = node_agent(nodes(uuid.uuid4().hex[:6]))
            url = fresh_database(pg_url)
            args = ["--hosting", "kubernetes", "--kubeconfig", str(kube_cluster.kubeconfig),
                    "--warm-pool", f"Standard={warm}", "--capacity", "Standard=8", "--stop-grace-s", "2"]  # fmt: skip
            pair = stack.enter_context(replicas(tmp_path / "replicas", url, args, monkeypatch))
            openrr(
                "account", "set-quota", pair.a.account_id, "--size", "Standard", "--sessions", "8",
                "--database-url", url, data_dir=pair.a.data_dir,
            )  # fmt: skip
            core = client.CoreV1Api(stack.enter_context(kube_cluster.api_client()))
            ledger = PodLedger(core, kube_namespace).start()
            stack.callback(ledger.stop)
            return KubeReplicas(pair, agent, core, kube_namespace, ledger)

        yield start


def create(r: Replica, sid: str) -> dict[str, Any]:
    with r.api() as api:
        put = api.put(
            f"/accounts/{r.account_id}/sessions/{sid}", params=API, json={"maxLeaseTimeMinutes": 10, "size": "Standard"}
        )
    assert put.status_code == 201, put.text
    doc: dict[str, Any] = put.json()
    return doc


def stop(r: Replica, sid: str) -> None:
    with r.api() as api:
        assert api.post(f"/accounts/{r.account_id}/sessions/{sid}/:stop", params=API).status_code == 204


def warm_pool(r: Replica) -> float:
    """The replica's own count of free warm pods (its /metrics: backend.warm_count), what its fast start reads."""
    text = httpx.get(f"{r.endpoint}/metrics", verify=r.tls, timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "openrr_warm_pool" and s.labels.get("size") == "Standard":
                return float(s.value)
    return 0.0


def ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_sdk_lifecycle_alternating_between_kubernetes_replicas_streams_from_the_pod(
    kube_replicas: Callable[[int], KubeReplicas],
) -> None:
    from azure.mixedreality.remoterendering import RenderingSessionSize, RenderingSessionStatus

    env = kube_replicas(1)
    pair = env.pair
    # The warm pool is the cluster's (one pod, kept by whichever replica holds the maintenance lease); each replica
    # sees it Ready through its own watch.
    wait_for(lambda: warm_pool(pair.a) >= 1 and warm_pool(pair.b) >= 1, START_S, "a Ready warm pod", 0.2)
    warm = [p.metadata.name for p in env.pods()]
    assert len(warm) == 1, warm
    sdk, transport = alternating_sdk(pair)
    sid = f"k8s-sdk-{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    session = sdk.begin_rendering_session(
        session_id=sid, size=RenderingSessionSize.STANDARD, lease_time_minutes=15
    ).result(timeout=60)
    print(f"SDK warm start through alternating Kubernetes replicas: {time.perf_counter() - t0:.3f} s")
    assert session.status == RenderingSessionStatus.READY
    assert transport.put_statuses == ["Ready"]  # fast start: the create itself answered Ready
    pod = env.pod(sid)
    assert pod.metadata.name == warm[0]  # the warm pod itself: no new pod started for it
    assert session.hostname == pod.status.host_ip and session.hostname in ADDRESSES
    # A client streams from the pod, with a token from the other replica than the one that placed it.
    assert frame(pair.b, {"hostname": session.hostname, "handshakePort": session.handshake_port}) == FRAME
    sdk_get_update_list_stop(sdk, session)
    assert {port for _, port in transport.sent} == {pair.a.port, pair.b.port}
    assert {m for m, _ in transport.sent} >= {"PUT", "GET", "PATCH", "POST"}
    # Whichever replica took the stop, the session's pod is deleted (watched, not polled).
    watch_until(predicate=lambda obj: obj is None, timeout=30, what=f"{warm[0]} deleted",
                **pod_named(env.core, env.ns, warm[0]))  # fmt: skip
    env.assert_no_orphans()


def test_kill9_of_one_replica_while_sessions_start_and_stop_the_survivor_takes_over(
    kube_replicas: Callable[[int], KubeReplicas],
) -> None:
    # No warm pool: the starting sessions are real cold starts, in progress when A dies.
    env = kube_replicas(0)
    a, b = env.pair.a, env.pair.b
    stopping = [f"stopping-{i}" for i in range(2)]
    starting = [f"starting-{i}" for i in range(3)]
    for sid in stopping:
        create(a, sid)
    with b.api() as api_b:
        for sid in stopping:
            wait_status(api_b, a.account_id, sid, "Ready", START_S)
        stopped_pods = [env.pod(sid).metadata.name for sid in stopping]
        # A owns them all (a create makes the creating replica the owner); then it dies mid-start and mid-stop.
        for sid in starting:
            assert create(a, sid)["status"] == "Starting"
        for sid in stopping:
            stop(a, sid)
        a.kill9()
        killed = time.monotonic()

        def taken_over() -> bool:
            rows = env.pair.rows()
            return all(rows[s]["owner"] == "replica-b" for s in starting) and env.deleted(stopped_pods)

        wait_for(taken_over, TAKEOVER_BOUND_S + 10, "B to take over A's sessions", 0.1)
        took = time.monotonic() - killed
        print(f"Kubernetes replicas: takeover after kill -9 of a replica: {took:.2f} s")
        assert took <= TAKEOVER_BOUND_S, f"takeover took {took:.1f} s"

        # Pods outlive replicas: the starting sessions end Ready (their pods kept, or placed once, by B).
        docs = {sid: wait_status(api_b, a.account_id, sid, "Ready", START_S) for sid in starting}
        for sid in stopping:
            assert session_doc(api_b, a.account_id, sid)["status"] == "Stopped"
    wait_for(lambda: not any(env.pod(s) for s in stopping), 30, "the stopped sessions' pods to be gone")
    assert frame(b, docs[starting[0]]) == FRAME
    rows = env.pair.rows()
    assert set(rows) == {*stopping, *starting}, "a record was lost or made"
    assert all(rows[s]["host_released"] for s in stopping)
    env.assert_no_orphans()
    # The node agent runs exactly the starting sessions' servers: no process left of a stopped pod.
    names = {env.pod(s).metadata.name for s in starting}
    wait_for(lambda: set(env.agent.pods_running()) == names, 30, "only the live pods' servers to run")
    assert all(ready(env.pod(s)) for s in starting)
    env.all_stopped(b, starting)
    assert "Traceback" not in b.log(), b.log()[-4000:]


def test_both_replicas_killed_and_restarted_adopt_the_ready_pods(kube_replicas: Callable[[int], KubeReplicas]) -> None:
    env = kube_replicas(0)
    pair = env.pair
    sids = {"adopt-a": pair.a, "adopt-b": pair.b}
    for sid, r in sids.items():
        create(r, sid)
    with pair.a.api() as api:
        docs = {sid: wait_status(api, pair.a.account_id, sid, "Ready", START_S) for sid in sids}
    before = {sid: env.pod(sid) for sid in sids}
    procs = {sid: env.agent.process_of(p.metadata.name) for sid, p in before.items()}
    pair.a.kill9()
    pair.b.kill9()
    killed = time.monotonic()
    # Restarted as a Deployment restarts them: new pods, so new replica names (the default name is host-pid-random).
    # The sessions' owners are gone for good: the sessions are taken over once their lease lapses.
    for r in (pair.a, pair.b):
        assert r.args[-2] == "--replica-id"
        r.args[-1] += "-restarted"
        r.start()
    new_names = {pair.a.args[-1], pair.b.args[-1]}
    wait_for(lambda: all(row["owner"] in new_names for row in pair.rows().values()), TAKEOVER_BOUND_S + 10,
             "the restarted replicas to drive the sessions", 0.1)  # fmt: skip
    print(f"Kubernetes replicas: both restarted, the sessions adopted {time.monotonic() - killed:.2f} s after")
    for sid, r in sids.items():
        with r.api() as api:
            doc = session_doc(api, r.account_id, sid)
        assert doc["status"] == "Ready" and doc["handshakePort"] == docs[sid]["handshakePort"], doc
        pod = env.pod(sid)
        assert pod.metadata.uid == before[sid].metadata.uid and ready(pod)
        # The same server process: adopted, not restarted.
        assert env.agent.process_of(pod.metadata.name) == procs[sid]
    assert frame(pair.b, docs["adopt-a"]) == FRAME
    assert len(env.pods()) == len(sids)
    assert set(pair.rows()) == set(sids)
    env.assert_no_orphans()
    env.all_stopped(pair.b, list(sids))
