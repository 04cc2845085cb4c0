"""Finding 8: a deleted account's render servers kept running (and kept accepting its tokens); servers no session
claims were released only at start-up. Now every reconcile pass stops the servers no live session claims, while
warm-pool servers (claimed by no session by design) stay."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import httpx

from tests.harness import Service, create_account, free_port, openrr, process_gone, wait_for, wait_status

API = {"api-version": "2021-01-01"}


def _create(api: httpx.Client, account: str, sid: str) -> None:
    r = api.put(f"/accounts/{account}/sessions/{sid}", params=API, json={"maxLeaseTimeMinutes": 10, "size": "Standard"})
    assert r.status_code == 201, r.text


def _pid_of(svc: Service, session_id: str) -> int:
    return int(svc.host_record(session_id)["pid"])


def _warm_pid(svc: Service) -> int:
    def probe() -> int | None:
        warm = [h["pid"] for h in svc.host_records() if not h.get("session_id")]
        return warm[0] if len(warm) == 1 else None

    return wait_for(probe, 20, "one warm render server")


def test_deleting_an_account_stops_its_render_servers_and_only_those(base_dir: Path) -> None:
    """Finding 8. `openrr account delete`, run by the operator in another process while the service runs, removes
    the account's session records (cascade). Before the fix nothing stopped the servers of those sessions until the
    service restarted: the first wait_for timed out and the deleted account's server kept running. Then a session
    row that disappears on its own (here deleted in the database) loses its server too. The other tenant's session
    and the warm-pool server, which no session claims, must survive every one of those passes."""
    data = base_dir / "lifecycle-delete"
    svc = Service(data, free_port(), ["--warm-pool", "Standard=1", "--capacity", "Standard=4"]).start()
    try:
        other = create_account(data)
        doomed_api, other_api = svc.api(), svc.api(other["accountId"], other["primaryKey"])
        _create(doomed_api, svc.account_id, "doomed")
        _create(other_api, other["accountId"], "bystander")
        wait_status(doomed_api, svc.account_id, "doomed", "Ready")
        wait_status(other_api, other["accountId"], "bystander", "Ready")
        doomed_pid, bystander_pid = _pid_of(svc, "doomed"), _pid_of(svc, "bystander")
        warm_pid = _warm_pid(svc)

        openrr("account", "delete", svc.account_id, data_dir=data)
        wait_for(lambda: process_gone(doomed_pid), 10, "the deleted account's render server to be stopped")
        r = doomed_api.get(f"/accounts/{svc.account_id}/sessions", params=API)
        assert r.status_code == 401, r.text
        assert not process_gone(bystander_pid), "another account's render server was stopped"
        assert not process_gone(warm_pid), "the warm-pool server was stopped: it is unclaimed by design"

        # A record that disappears without its account (here: deleted behind the service's back).
        with sqlite3.connect(data / "openrr.db") as db:
            assert db.execute("DELETE FROM sessions WHERE id = 'bystander'").rowcount == 1
        wait_for(lambda: process_gone(bystander_pid), 10, "the server of the vanished session to be stopped")
        assert not process_gone(warm_pid), "the warm-pool server was stopped: it is unclaimed by design"

        # The warm server is still whole: the next session is placed on it.
        sid = f"after-{uuid.uuid4().hex[:6]}"
        _create(other_api, other["accountId"], sid)
        wait_status(other_api, other["accountId"], sid, "Ready")
        assert _pid_of(svc, sid) == warm_pid
        other_api.post(f"/accounts/{other['accountId']}/sessions/{sid}/:stop", params=API)
    finally:
        assert svc.stop() == 0, svc.log()
    assert not svc.render_server_pids()
