"""Faults, with real processes: killed render servers, a killed control plane, leases that run out."""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from tests.harness import (
    Service,
    create_account,
    free_port,
    process_gone,
    render_server_pids,
    session_doc,
    wait_for,
    wait_status,
)

API = {"api-version": "2021-01-01"}


def _create(api: httpx.Client, account: str, sid: str, lease: int = 10, size: str = "Standard") -> None:
    r = api.put(f"/accounts/{account}/sessions/{sid}", params=API, json={"maxLeaseTimeMinutes": lease, "size": size})
    assert r.status_code == 201, r.text


def _server_pid(svc: Service, doc: dict[str, object]) -> int:
    """From the session's host record (/health names no session to strangers: tests/security/test_inspector.py)."""
    for path in (svc.data_dir / "hosts").glob("*.host.json"):
        record = json.loads(path.read_text())
        if record.get("session_id") == doc["id"]:
            return int(record["pid"])
    raise AssertionError(f"no render server record for session {doc['id']}")


def _render_process(server: psutil.Process) -> psutil.Process:
    (child,) = [c for c in server.children() if "openrr.render.frame_process" in c.cmdline()]
    return child


def test_killed_render_server_turns_session_into_error(service: Service) -> None:
    api = service.api()
    sid = f"fault-kill-{uuid.uuid4().hex[:8]}"
    _create(api, service.account_id, sid)
    doc = wait_status(api, service.account_id, sid, "Ready")
    server = psutil.Process(_server_pid(service, doc))
    render_process = _render_process(server)
    server.kill()
    failed = wait_status(api, service.account_id, sid, "Error", timeout=15)
    assert failed["error"]["code"] == "RenderServerFailed"
    assert "SIGKILL" in failed["error"]["message"]
    assert "hostname" not in failed and "handshakePort" not in failed
    listed = api.get(f"/accounts/{service.account_id}/sessions", params=API).json()["sessions"]
    assert sid not in {s["id"] for s in listed}
    # The GL child goes with its server, however the server died.
    wait_for(lambda: process_gone(render_process.pid), 5, "the killed server's render process to exit")


def test_killed_render_process_fails_the_session_and_its_server_exits(service: Service) -> None:
    api = service.api()
    sid = f"fault-gl-{uuid.uuid4().hex[:8]}"
    _create(api, service.account_id, sid)
    doc = wait_status(api, service.account_id, sid, "Ready")
    server = psutil.Process(_server_pid(service, doc))
    _render_process(server).kill()
    failed = wait_status(api, service.account_id, sid, "Error", timeout=15)
    assert failed["error"]["code"] == "RenderServerFailed"
    assert "its render process (GL) died" in failed["error"]["message"]
    wait_for(lambda: process_gone(server.pid), 5, "the render server to exit")


def test_lease_zero_expires_as_soon_as_ready(service: Service) -> None:
    api = service.api()
    sid = f"fault-lease0-{uuid.uuid4().hex[:8]}"
    _create(api, service.account_id, sid, lease=0)
    expired = wait_status(api, service.account_id, sid, "Expired", timeout=15)
    assert expired["elapsedTimeMinutes"] == 0 and "error" not in expired


def test_lease_of_one_minute_expires_and_stops_the_server(base_dir: Path) -> None:
    """Nobody polls meanwhile: the service enforces the lease on its own."""
    svc = Service(base_dir / "lease", free_port(), ["--warm-pool", "Standard=0"]).start()
    try:
        api = svc.api()
        _create(api, svc.account_id, "one-minute", lease=1)
        ready = wait_status(api, svc.account_id, "one-minute", "Ready")
        pid = _server_pid(svc, ready)
        wait_for(lambda: process_gone(pid), 75, "the render server to be stopped by lease expiry", interval=0.5)
        expired = session_doc(api, svc.account_id, "one-minute")
        assert expired["status"] == "Expired"
        assert expired["elapsedTimeMinutes"] == 1 and expired["maxLeaseTimeMinutes"] == 1
        assert not svc.render_server_pids()
    finally:
        svc.stop()


def test_capacity_limit_gives_a_clear_error(base_dir: Path) -> None:
    svc = Service(base_dir / "capacity", free_port(), ["--warm-pool", "Standard=0", "--capacity", "Standard=1"]).start()
    try:
        api = svc.api()
        _create(api, svc.account_id, "first")
        wait_status(api, svc.account_id, "first", "Ready")
        # From another account: one account may hold only capacity - 1 (at least 1) (tests/security/test_quotas.py).
        other = create_account(svc.data_dir)
        other_api = svc.api(other["accountId"], other["primaryKey"])
        _create(other_api, other["accountId"], "second")
        second = session_doc(other_api, other["accountId"], "second")
        assert second["status"] == "Error"
        assert second["error"]["code"] == "NoServerAvailable"
        assert "Standard" in second["error"]["message"]
        assert len(svc.render_server_pids()) == 1
        # Premium is a separate pool.
        _create(api, svc.account_id, "premium", size="Premium")
        wait_status(api, svc.account_id, "premium", "Ready")
    finally:
        assert svc.stop() == 0
    assert not svc.render_server_pids()


def test_control_plane_kill9_restart_adopts_live_sessions(base_dir: Path) -> None:
    data = base_dir / "adopt"
    port = free_port()
    svc = Service(data, port, ["--warm-pool", "Standard=1", "--capacity", "Standard=4"]).start()
    try:
        api = svc.api()
        names = ("survivor", "victim", "stopped-before")
        for sid in names:
            _create(api, svc.account_id, sid)
        docs = {sid: wait_status(api, svc.account_id, sid, "Ready") for sid in names}
        assert api.post(f"/accounts/{svc.account_id}/sessions/stopped-before/:stop", params=API).status_code == 204
        wait_for(lambda: len(svc.render_server_pids()) == 3, 15, "a refilled warm pool and two live servers")
        survivor_pid = _server_pid(svc, docs["survivor"])
        victim_pid = _server_pid(svc, docs["victim"])
    finally:
        svc.kill9()
    # With the control plane dead, one session's server dies too.
    os.kill(victim_pid, signal.SIGKILL)
    wait_for(lambda: process_gone(victim_pid), 5, "the victim to die")

    svc = Service(data, port, svc.args, account_id=svc.account_id, key=svc.key).start()
    try:
        api = svc.api()
        survivor = session_doc(api, svc.account_id, "survivor")
        assert survivor["status"] == "Ready"
        assert survivor["handshakePort"] == docs["survivor"]["handshakePort"]
        assert _server_pid(svc, survivor) == survivor_pid  # the same process, adopted
        victim = wait_status(api, svc.account_id, "victim", "Error", timeout=15)
        assert "no longer running" in victim["error"]["message"]
        assert session_doc(api, svc.account_id, "stopped-before")["status"] == "Stopped"
        listed = {s["id"] for s in api.get(f"/accounts/{svc.account_id}/sessions", params=API).json()["sessions"]}
        assert listed == {"survivor"}

        # The adopted session can still be managed: extend, then stop kills the adopted process.
        r = api.patch(f"/accounts/{svc.account_id}/sessions/survivor", params=API, json={"maxLeaseTimeMinutes": 20})
        assert r.status_code == 200 and r.json()["maxLeaseTimeMinutes"] == 20
        assert api.post(f"/accounts/{svc.account_id}/sessions/survivor/:stop", params=API).status_code == 204
        wait_for(lambda: process_gone(survivor_pid), 15, "the adopted server to be stopped")
        # The old control plane's warm server was not adopted into nothing: only the new pool remains.
        wait_for(lambda: len(svc.render_server_pids()) == 1, 15, "only the new warm server to remain")
    finally:
        assert svc.stop() == 0
    assert not render_server_pids(data)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_clean_shutdown_stops_render_servers_and_keeps_records(base_dir: Path, sig: signal.Signals) -> None:
    data = base_dir / f"shutdown-{sig.name}"
    svc = Service(data, free_port(), ["--warm-pool", "Standard=1"]).start()
    api = svc.api()
    _create(api, svc.account_id, "live")
    wait_status(api, svc.account_id, "live", "Ready")
    assert svc.stop(sig) == 0
    assert not render_server_pids(data)
    svc = Service(data, svc.port, svc.args, account_id=svc.account_id, key=svc.key).start()
    try:
        doc = session_doc(svc.api(), svc.account_id, "live")
        assert doc["status"] == "Error" and doc["error"]["code"] == "ServiceShutdown"
    finally:
        svc.stop()


def test_stop_escalates_to_sigkill_when_sigterm_is_not_honoured(base_dir: Path) -> None:
    svc = Service(base_dir / "escalate", free_port(), ["--warm-pool", "Standard=0", "--stop-grace-s", "1"]).start()
    try:
        api = svc.api()
        _create(api, svc.account_id, "frozen")
        pid = _server_pid(svc, wait_status(api, svc.account_id, "frozen", "Ready"))
        # A stopped (frozen) process cannot act on SIGTERM; only SIGKILL ends it.
        os.kill(pid, signal.SIGSTOP)
        assert api.post(f"/accounts/{svc.account_id}/sessions/frozen/:stop", params=API).status_code == 204
        wait_for(lambda: process_gone(pid), 15, "the frozen server to be killed after the grace period")
        assert "ignored SIGTERM; killing it" in svc.log()
    finally:
        assert svc.stop() == 0
