"""Finding 7: one account could hold every render server of a size (for up to a 24 h lease): there was no
per-account quota. Now an account holds at most its quota of live (Starting + Ready) sessions per size: by default
the size's capacity minus one (at least 1), per account through `openrr account set-quota`."""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path

import httpx
import pytest
from azure.core.exceptions import HttpResponseError

from openrr.accounts.service import AccountService
from openrr.sessions.quotas import QuotaExceeded, default_quota
from openrr.sessions.service import SessionNotFound, SessionService
from openrr.sessions.state import SessionSize, SessionStatus
from openrr.store.db import Database
from tests.harness import Service, create_account, free_port, openrr
from tests.postgres import pg_url

__all__ = ["pg_url"]  # a fixture, used by name

API = {"api-version": "2021-01-01"}
V1 = "/v1/accounts/{account}/sessions/create"


def _put(api: httpx.Client, account: str, sid: str) -> httpx.Response:
    body = {"maxLeaseTimeMinutes": 10, "size": "Standard"}
    return api.put(f"/accounts/{account}/sessions/{sid}", params=API, json=body)


def _assert_quota_refusal(r: httpx.Response, account: str, quota: int, live: int) -> None:
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "QuotaExceeded"
    assert f"quota of {quota} live Standard" in error["message"]
    assert f"has {live} Standard session" in error["message"]
    assert f"openrr account set-quota {account} --size Standard --sessions N" in error["message"]


def test_default_quota_is_capacity_minus_one_at_least_one() -> None:
    """Finding 7: the default leaves one server of each size to the other accounts (before: no quota at all)."""
    assert [default_quota(c) for c in (0, 1, 2, 3, 16)] == [1, 1, 1, 2, 15]


def test_quota_refuses_the_third_standard_session_on_both_apis_and_the_sdk(base_dir: Path) -> None:
    """Finding 7. Capacity Standard=3: before the fix the third create of one account was accepted (201) and that
    account held every Standard server, so the other account's create ended in NoServerAvailable."""
    data = base_dir / "quota-e2e"
    svc = Service(data, free_port(), ["--warm-pool", "Standard=0", "--capacity", "Standard=3"]).start()
    made: list[tuple[httpx.Client, str, str]] = []
    try:
        a = svc.account_id
        api = svc.api()
        for sid in ("q1", "q2"):
            assert _put(api, a, sid).status_code == 201
            made.append((api, a, sid))
        _assert_quota_refusal(_put(api, a, "q3"), a, quota=2, live=2)
        # The refused session was not recorded.
        assert api.get(f"/accounts/{a}/sessions/q3", params=API).status_code == 404
        # The legacy API refuses the same way.
        r = api.post(V1.format(account=a), json={"maxLeaseTime": "0:10:00", "size": "standard"})
        _assert_quota_refusal(r, a, quota=2, live=2)
        # The official SDK surfaces it as an error carrying ARR's code and message.
        with pytest.raises(HttpResponseError) as caught:
            svc.sdk().begin_rendering_session(session_id="q3", size="standard", lease_time_minutes=10)
        assert caught.value.status_code == 403
        assert caught.value.error is not None and caught.value.error.code == "QuotaExceeded"
        assert "openrr account set-quota" in str(caught.value)

        # Another account still gets the server that was left.
        other = create_account(data)
        other_api = svc.api(other["accountId"], other["primaryKey"])
        r = _put(other_api, other["accountId"], "theirs")
        assert r.status_code == 201 and r.json()["status"] == "Starting", r.text
        assert other_api.post(f"/accounts/{other['accountId']}/sessions/theirs/:stop", params=API).status_code == 204

        # The operator raises the quota while the service runs; the next create succeeds.
        out = openrr("account", "set-quota", a, "--size", "Standard", "--sessions", "3", "--json", data_dir=data)
        assert json.loads(out.stdout)["sessionQuotas"]["Standard"] == {"sessions": 3, "default": False}
        r = _put(api, a, "q3")
        assert r.status_code == 201 and r.json()["status"] == "Starting", r.text
        made.append((api, a, "q3"))

        # Back to the default: 3 live sessions are kept (a quota never stops one), the 4th is refused.
        out = openrr("account", "set-quota", a, "--size", "standard", "--reset", "--json", data_dir=data)
        assert json.loads(out.stdout)["sessionQuotas"]["Standard"]["default"] is True
        _assert_quota_refusal(_put(api, a, "q4"), a, quota=2, live=3)
        shown = openrr("account", "show", a, data_dir=data).stdout
        assert "sessionQuotas" in shown and "Standard=" in shown
    finally:
        for client, account, sid in made:
            client.post(f"/accounts/{account}/sessions/{sid}/:stop", params=API)
        assert svc.stop() == 0, svc.log()


def _one_pair(services: list[SessionService], account: str) -> list[str]:
    """Both replicas create a session for `account` at once; what each got."""
    barrier = threading.Barrier(len(services))
    outcome: list[str] = []

    def create(svc: SessionService, sid: str) -> None:
        barrier.wait()
        try:
            outcome.append(svc.create(account, sid, SessionSize.STANDARD, 10)[0].status.value)
        except QuotaExceeded:
            outcome.append("refused")

    threads = [threading.Thread(target=create, args=(svc, f"edge-{i}")) for i, svc in enumerate(services)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return outcome


def _race(url: str, rounds: int) -> None:
    """Two replicas (each its own engine and connection pool), two threads released together, one create each at
    the edge of the quota, `rounds` times: exactly one of each pair may be admitted."""
    dbs = [Database(url), Database(url)]
    dbs[0].migrate()
    try:
        services = [SessionService(db, {"Standard": 3}, on_change=lambda: None) for db in dbs]
        for n in range(rounds):
            account = AccountService(dbs[0]).create().account.account_id
            services[0].create(account, "first", SessionSize.STANDARD, 10)  # quota 2: one more is allowed
            outcome = _one_pair(services, account)
            assert sorted(outcome) == sorted([SessionStatus.STARTING.value, "refused"]), (n, outcome)
            for sid in ("first", "edge-0", "edge-1"):  # free the capacity for the next round
                with contextlib.suppress(SessionNotFound):
                    services[0].stop(account, sid)
    finally:
        for db in dbs:
            db.dispose()


def test_concurrent_creates_at_the_quota_edge_on_sqlite(tmp_path: Path) -> None:
    """Finding 7: the quota is checked in the transaction that admits the session, so two creates racing for the
    last place cannot both get it. Before the fix both were admitted (no quota); a check outside that transaction
    would let both read 1 live session and both insert."""
    _race(f"sqlite:///{tmp_path / 'openrr.db'}", rounds=20)


def test_concurrent_creates_at_the_quota_edge_on_postgres(pg_url: str) -> None:
    """Finding 7, on PostgreSQL, where READ COMMITTED would let two replicas both count 1 and both insert: the
    count runs under the same advisory lock as the capacity check. Before the fix both creates were admitted."""
    _race(pg_url, rounds=20)
