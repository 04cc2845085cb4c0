"""Two `openrr serve` replicas on one real PostgreSQL: the official SDK's requests alternate between them through a
session's whole lifecycle, a replica killed with SIGKILL has its sessions taken over by the other within the bound,
and capacity holds across replicas.

Each replica has its own data directory (its render servers are its own children: the local backend), and they
share the database, the local CA directory (--ca-dir) and the secrets key (OPENRR_SECRETS_KEY), as
docs/kubernetes.md asks of replicas. Nothing is faked: real processes, real render servers, the unmodified SDK.

With the local backend a dead replica's render servers ran on its own machine: the survivor cannot reach them, so
it ends those sessions in Error saying why (RenderServerLost, naming the lost replica), within the bound. The
servers themselves are stopped by the lost replica when it starts again on its data directory (it finds their
records ended); the test restarts it, and ends with no render server left running under either replica.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.harness import free_port, openrr, process_gone, render_server_pids, session_doc, wait_for
from tests.postgres import fresh_database, pg_url
from tests.replicas import Pair, Replica, alternating_sdk, replicas, sdk_get_update_list_stop

__all__ = ["pg_url"]  # a fixture, used by name

API = {"api-version": "2021-01-01"}
TAKEOVER_BOUND_S = 15.0
"""The issue's goal; the design's bound is session_lease_s (10 s) + one reconcile interval (1 s), plus the start of
the handling task and the store writes."""


def released(pair: Pair, sid: str) -> bool:
    return bool(pair.rows()[sid]["host_released"])


def warm_bound(r: Replica) -> bool:
    """The replica has a warm server that has bound its ports (what its fast start counts)."""
    return any(h["session_id"] is None and (r.data_dir / "hosts" / h["host_id"] / "ports.json").exists()
               for h in r.host_records())  # fmt: skip


def test_sdk_lifecycle_alternating_between_replicas(
    base_dir: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.mixedreality.remoterendering import RenderingSessionSize, RenderingSessionStatus

    args = ["--warm-pool", "Standard=1", "--capacity", "Standard=6"]
    # What is tested here is that a create with a free warm server answers Ready; how fast is the bench's question
    # (bench/sdk_warm_start.py). The first start on a replica takes ~1 s here (first connections), and the machine
    # running the suite is shared: a generous wait keeps the answer Ready whatever the load.
    monkeypatch.setenv("OPENRR_FAST_START_WAIT_S", "20")
    with replicas(base_dir / "replicas-sdk", fresh_database(pg_url), args, monkeypatch) as pair:
        client, transport = alternating_sdk(pair)
        probe = httpx.Client(verify=pair.a.tls)
        for n in range(2):  # the PUT lands on A once and on B once
            wait_for(lambda: warm_bound(pair.a) and warm_bound(pair.b), 60, "a bound warm server on each replica")
            sid = f"alt-{n}-{uuid.uuid4().hex[:6]}"
            t0 = time.perf_counter()
            session = client.begin_rendering_session(
                session_id=sid, size=RenderingSessionSize.STANDARD, lease_time_minutes=15
            ).result(timeout=60)
            took = time.perf_counter() - t0
            print(f"SDK warm start through alternating replicas: {took:.3f} s")
            assert session.status == RenderingSessionStatus.READY
            # The create itself said Ready: the SDK's first poll (sent at once) ends its wait, not one 5 s later.
            assert transport.put_statuses[-1] == "Ready", transport.put_statuses
            # Ready means its server answers, whichever replica placed it.
            health = probe.get(f"https://{session.hostname}:{session.handshake_port}/health", timeout=5)
            assert health.json() == {"status": "ok"}
            sdk_get_update_list_stop(client, session)
            # The owning replica stops the server, whichever replica took the stop.
            row = pair.rows()[sid]
            wait_for(functools.partial(released, pair, sid), 15, f"{sid}'s server to be released")
            assert row["owner"] in ("replica-a", "replica-b")
        assert {port for _, port in transport.sent} == {pair.a.port, pair.b.port}
        assert {m for m, _ in transport.sent} >= {"PUT", "GET", "PATCH", "POST"}

        # The v1 create: it answers only the id, after the fast start, so the first properties poll reads Ready.
        wait_for(lambda: warm_bound(pair.b), 60, "a bound warm server on B")
        v1 = pair.b.api()
        made = v1.post(
            f"/v1/accounts/{pair.b.account_id}/sessions/create", json={"maxLeaseTime": "0:10:00", "size": "Standard"}
        )
        assert made.status_code == 202, made.text
        v1_id = made.json()["sessionId"]
        props = pair.a.api().get(f"/v1/accounts/{pair.a.account_id}/sessions/{v1_id}/properties").json()
        assert props["sessionStatus"] == "Ready" and props["handshakePort"], props
        assert v1.delete(f"/v1/accounts/{pair.b.account_id}/sessions/{v1_id}").status_code == 204

        # A cold start (no warm server free on either replica) still answers Starting.
        for tag, r in (("a", pair.a), ("b", pair.b)):
            api = r.api()
            for i in range(2):  # more creates than warm servers: the second finds none bound
                put = api.put(
                    f"/accounts/{r.account_id}/sessions/cold-{tag}-{i}",
                    params=API,
                    json={"maxLeaseTimeMinutes": 5, "size": "Standard"},
                )
                assert put.status_code == 201, put.text
            assert put.json()["status"] == "Starting", put.json()
            for i in range(2):
                api.post(f"/accounts/{r.account_id}/sessions/cold-{tag}-{i}/:stop", params=API)
        probe.close()


def test_kill9_of_a_replica_its_sessions_are_taken_over_within_the_bound(
    base_dir: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No warm pool: "a-starting" is a real cold start, in progress when A dies.
    args = ["--warm-pool", "Standard=0", "--capacity", "Standard=6", "--stop-grace-s", "2"]
    with replicas(base_dir / "replicas-kill", fresh_database(pg_url), args, monkeypatch) as pair:
        a, b = pair.a, pair.b
        api_a, api_b = a.api(), b.api()

        def create(api: httpx.Client, sid: str) -> None:
            put = api.put(
                f"/accounts/{a.account_id}/sessions/{sid}",
                params=API,
                json={"maxLeaseTimeMinutes": 10, "size": "Standard"},
            )
            assert put.status_code == 201, put.text

        for sid in ("a-ready", "a-stopping"):
            create(api_a, sid)
        create(api_b, "b-ready")

        def ready(sid: str) -> bool:
            return bool(session_doc(api_b, a.account_id, sid)["status"] == "Ready")

        for sid in ("a-ready", "a-stopping", "b-ready"):
            wait_for(functools.partial(ready, sid), 60, f"{sid} Ready")
        b_port = session_doc(api_a, a.account_id, "b-ready")["handshakePort"]
        # Mid-start and mid-stop, then A dies.
        create(api_a, "a-starting")
        assert api_a.post(f"/accounts/{a.account_id}/sessions/a-stopping/:stop", params=API).status_code == 204
        a_servers = a.render_server_pids()
        a.kill9()
        killed = time.monotonic()

        # a-ready: its server was A's child; B ends it in Error naming A, within the bound.
        def ended(sid: str) -> dict[str, Any] | None:
            doc = session_doc(api_b, a.account_id, sid)
            return doc if doc["status"] == "Error" else None

        doc = wait_for(lambda: ended("a-ready"), TAKEOVER_BOUND_S + 5, "a-ready to be taken over")
        took = time.monotonic() - killed
        print(f"takeover of a Ready session after kill -9: {took:.2f} s")
        assert took <= TAKEOVER_BOUND_S, f"takeover took {took:.1f} s"
        assert doc["error"]["code"] == "RenderServerLost" and "replica-a" in doc["error"]["message"]

        # a-starting: either A had recorded its server (then: Error, as above) or not (then B placed it: Ready).
        def settled() -> dict[str, Any] | None:
            d = session_doc(api_b, a.account_id, "a-starting")
            return d if d["status"] in ("Error", "Ready") else None

        starting = wait_for(settled, TAKEOVER_BOUND_S + 30, "a-starting to be taken over")
        print(f"the session starting when A died: {starting['status']} after {time.monotonic() - killed:.2f} s")
        if starting["status"] == "Error":
            assert starting["error"]["code"] == "RenderServerLost", starting

        # a-stopping stays Stopped; B marks its server released (A's machine stops it on A's restart).
        def stopping_released() -> dict[str, dict[str, Any]] | None:
            found = pair.rows()
            return found if found["a-stopping"]["host_released"] else None

        rows = wait_for(stopping_released, TAKEOVER_BOUND_S, "a-stopping to be released by B")
        assert rows["a-stopping"]["status"] == "Stopped"
        # No record lost; every one of A's is now B's; B's own session did not move.
        assert set(rows) == {"a-ready", "a-stopping", "a-starting", "b-ready"}
        assert {r["owner"] for r in rows.values()} == {"replica-b"}
        b_ready = session_doc(api_b, a.account_id, "b-ready")
        assert b_ready["status"] == "Ready" and b_ready["handshakePort"] == b_port
        # A's servers outlived it (their own sessions: start_new_session); restarting A on its data directory
        # stops every one whose record ended, and only keeps its new warm server.
        assert any(not process_gone(pid) for pid in a_servers)
        a.start()
        wait_for(lambda: all(process_gone(pid) for pid in a_servers), 30, "A's old render servers to be stopped")
        for sid in ("a-ready", "a-stopping", "a-starting", "b-ready"):
            api_b.post(f"/accounts/{a.account_id}/sessions/{sid}/:stop", params=API)
        # No step of the takeover failed (a refused or repeated transition would log its traceback).
        assert "Traceback" not in b.log(), b.log()[-4000:]


def test_capacity_holds_across_replicas(base_dir: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--warm-pool", "Standard=0", "--capacity", "Standard=3", "--stop-grace-s", "2"]
    url = fresh_database(pg_url)
    with replicas(base_dir / "replicas-capacity", url, args, monkeypatch) as pair:
        # The account may hold more than the capacity, so that capacity is what refuses.
        openrr(
            "account", "set-quota", pair.a.account_id, "--size", "Standard", "--sessions", "20",
            "--database-url", url, data_dir=pair.a.data_dir,
        )  # fmt: skip
        clients = [pair.a.api(), pair.b.api()]
        start = threading.Barrier(8)

        def create(i: int) -> dict[str, Any]:
            api = clients[i % 2]
            start.wait()
            r = api.put(
                f"/accounts/{pair.a.account_id}/sessions/cap-{i}",
                params=API,
                json={"maxLeaseTimeMinutes": 5, "size": "Standard"},
            )
            assert r.status_code == 201, r.text
            doc: dict[str, Any] = r.json()
            return doc

        with ThreadPoolExecutor(8) as pool:
            docs = list(pool.map(create, range(8)))
        live = [d for d in docs if d["status"] in ("Starting", "Ready")]
        refused = [d for d in docs if d["status"] == "Error"]
        assert len(live) == 3 and len(refused) == 5, docs
        assert {d["error"]["code"] for d in refused} == {"NoServerAvailable"}
        for d in live:
            clients[0].post(f"/accounts/{pair.a.account_id}/sessions/{d['id']}/:stop", params=API)


def test_a_replica_with_another_secrets_key_refuses_to_start(
    base_dir: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fresh_database(pg_url)
    first = base_dir / "secrets-first"
    monkeypatch.setenv("OPENRR_SECRETS_KEY", Fernet.generate_key().decode())
    account = json.loads(openrr("account", "create", "--json", "--database-url", url, data_dir=first).stdout)
    openrr(
        "account", "link-storage", account["accountId"], "--account-name", "acct", "--account-key", "a2V5",
        "--database-url", url, data_dir=first,
    )  # fmt: skip
    monkeypatch.setenv("OPENRR_SECRETS_KEY", Fernet.generate_key().decode())
    other = base_dir / "secrets-other"
    cmd = [sys.executable, "-m", "openrr", "serve", "--data-dir", str(other), "--port", str(free_port()),
           "--database-url", url, "--conversion-workers", "0"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "must share one key" in done.stderr
    assert not render_server_pids(other)
