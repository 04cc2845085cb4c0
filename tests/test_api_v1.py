"""The legacy v1 API and the exact request shapes of ARR's PowerShell scripts (list paging: tests/unit/test_paging.py).

v1 and the 2021 API are two windows onto the same sessions: what one does, the other shows.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.harness import Service, session_doc, wait_for, wait_status

V21 = {"api-version": "2021-01-01"}
PREVIEW = {"api-version": "2021-01-01-preview"}  # what every 2021-era script sends
JSON_CT = {"Content-Type": "application/json"}  # PowerShell sends it even on GET and on the body-less :stop
V1_FIELDS = {
    "message",
    "sessionElapsedTime",
    "sessionHostname",
    "sessionId",
    "sessionMaxLeaseTime",
    "sessionSize",
    "sessionStatus",
    "teraflops",
    "handshakePort",
    "arrInspectorPort",
}
TIMESPAN = re.compile(r"(\d+\.)?\d{2}:\d{2}:\d{2}")


def _v1(account_id: str) -> str:
    return f"/v1/accounts/{account_id}/sessions"


def _v1_create(api: httpx.Client, account_id: str, body: dict[str, Any], made: list[str]) -> httpx.Response:
    # The v1-era script's exact URL: trailing slash, Content-Type set.
    r = api.post(f"{_v1(account_id)}/create/", json=body, headers=JSON_CT)
    if r.status_code == 202:
        made.append(r.json()["sessionId"])
    return r


def _props(api: httpx.Client, account_id: str, sid: str) -> dict[str, Any]:
    r = api.get(f"{_v1(account_id)}/{sid}/properties/", headers=JSON_CT)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    doc: dict[str, Any] = r.json()
    assert set(doc) == V1_FIELDS, doc
    return doc


def _wait_props(api: httpx.Client, account_id: str, sid: str, status: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        doc = _props(api, account_id, sid)
        return doc if doc["sessionStatus"] == status else None

    return wait_for(probe, 60, f"v1 session {sid} to be {status}", interval=0.1)


def _live_ids(api: httpx.Client, account_id: str) -> set[str]:
    r = api.get(f"/accounts/{account_id}/sessions", params=V21)
    assert r.status_code == 200, r.text
    return {s["id"] for s in r.json()["sessions"]}


def _assert_error(r: httpx.Response, status: int, code: str, message: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    err: dict[str, Any] = r.json()["error"]
    assert err["code"] == code
    if message is not None:
        assert err["message"] == message
    return err


# --- the v1 API, as the v1-era RenderingSession.ps1 drove it ------------------------------------


def test_v1_script_lifecycle(service: Service, made: list[str]) -> None:
    aid = service.account_id
    with service.http() as sts:
        # ARRUtils.ps1: lower-case path, no api-version.
        tok = sts.get(f"/accounts/{aid}/token", headers={"Authorization": f"Bearer {aid}:{service.key}"})
    assert tok.status_code == 200
    with httpx.Client(
        base_url=service.endpoint, verify=service.tls, headers={"Authorization": f"Bearer {tok.json()['AccessToken']}"}
    ) as api:
        r = _v1_create(
            api, aid, {"maxLeaseTime": "4:0:0", "size": "standard", "directConnectionSession": "false"}, made
        )
        assert r.status_code == 202, r.text
        body = r.json()
        assert list(body) == ["sessionId"]
        sid = body["sessionId"]
        assert str(uuid.UUID(sid)) == sid  # a server-made GUID
        # The Location header leads to the new session.
        location = httpx.URL(service.endpoint).join(r.headers["location"])
        assert sid in str(location)
        followed = api.get(location)
        assert followed.status_code == 200 and followed.json()["sessionId"] == sid

        first = _props(api, aid, sid)
        assert first["sessionId"] == sid
        assert first["message"] is None
        assert first["sessionMaxLeaseTime"] == "04:00:00"  # "4:0:0" in, zero-padded out
        assert first["sessionSize"] == "Standard"  # "standard" in, canonical out
        assert first["sessionStatus"] in ("Starting", "Ready")
        assert re.fullmatch(r"00:00:\d{2}", first["sessionElapsedTime"]), first

        ready = _wait_props(api, aid, sid, "Ready")
        assert ready["message"] is None
        assert ready["sessionHostname"] == "127.0.0.1"
        assert 49152 <= ready["handshakePort"] <= 65534 and 49152 <= ready["arrInspectorPort"] <= 65534
        assert ready["teraflops"] == pytest.approx(8.1)
        assert re.fullmatch(r"00:00:\d{2}", ready["sessionElapsedTime"]), ready
        # Ready means the render server answers on the port v1 reports.
        health = httpx.get(
            f"https://{ready['sessionHostname']}:{ready['handshakePort']}/health", verify=service.tls, timeout=5
        )
        assert health.json() == {"status": "ok"}  # which session it serves is for the account's tokens only
        status = httpx.get(
            f"https://{ready['sessionHostname']}:{ready['arrInspectorPort']}/api/status",
            headers={"Authorization": api.headers["Authorization"]},
            verify=service.tls,
            timeout=5,
        )
        assert status.json()["sessionId"] == sid

        # The 2021 window shows the same session.
        doc = session_doc(api, aid, sid)
        assert doc["id"] == sid and doc["status"] == "Ready" and doc["size"] == "Standard"
        assert doc["maxLeaseTimeMinutes"] == 240
        assert (doc["hostname"], doc["handshakePort"], doc["arrInspectorPort"]) == (
            ready["sessionHostname"],
            ready["handshakePort"],
            ready["arrInspectorPort"],
        )

        listed = api.get(f"{_v1(aid)}/", headers=JSON_CT)
        assert listed.status_code == 200
        assert list(listed.json()) == ["sessions"]
        mine = [s for s in listed.json()["sessions"] if s["sessionId"] == sid]
        assert len(mine) == 1 and set(mine[0]) == V1_FIELDS
        assert mine[0]["sessionStatus"] == "Ready" and mine[0]["sessionMaxLeaseTime"] == "04:00:00"

        # Update: the new lease is the total since the start.
        patched = api.patch(f"{_v1(aid)}/{sid}", json={"maxLeaseTime": "5:0:0"}, headers=JSON_CT)
        assert patched.status_code == 200 and patched.content == b""
        assert session_doc(api, aid, sid)["maxLeaseTimeMinutes"] == 300
        assert _props(api, aid, sid)["sessionMaxLeaseTime"] == "05:00:00"

        deleted = api.delete(f"{_v1(aid)}/{sid}", headers=JSON_CT)
        assert deleted.status_code == 204 and deleted.content == b""
        stopped = _props(api, aid, sid)
        assert stopped["sessionStatus"] == "Stopped"
        assert stopped["message"] is None
        assert stopped["sessionHostname"] is None and stopped["handshakePort"] is None
        assert stopped["sessionMaxLeaseTime"] == "05:00:00"
        assert session_doc(api, aid, sid)["status"] == "Stopped"
        assert sid not in {s["sessionId"] for s in api.get(f"{_v1(aid)}/").json()["sessions"]}
        assert sid not in _live_ids(api, aid)


def test_v1_docs_request_shape_without_trailing_slash(service: Service, api: httpx.Client, made: list[str]) -> None:
    aid = service.account_id
    r = api.post(f"{_v1(aid)}/create", json={"maxLeaseTime": "4:0:0", "models": [], "size": "standard"})
    assert r.status_code == 202, r.text
    sid = r.json()["sessionId"]
    made.append(sid)
    props = api.get(f"{_v1(aid)}/{sid}/properties")
    assert props.status_code == 200 and props.json()["sessionId"] == sid
    assert props.headers["cache-control"] == "no-store,no-cache"
    assert sid in {s["sessionId"] for s in api.get(_v1(aid)).json()["sessions"]}
    assert api.delete(f"{_v1(aid)}/{sid}").status_code == 204
    assert _props(api, aid, sid)["sessionStatus"] == "Stopped"


@pytest.mark.parametrize(("legacy", "canonical"), [("small", "Standard"), ("big", "Premium"), ("Premium", "Premium")])
def test_v1_sizes(service: Service, api: httpx.Client, made: list[str], legacy: str, canonical: str) -> None:
    r = _v1_create(api, service.account_id, {"maxLeaseTime": "0:10:0", "size": legacy}, made)
    assert r.status_code == 202, r.text
    sid = r.json()["sessionId"]
    assert _props(api, service.account_id, sid)["sessionSize"] == canonical
    assert session_doc(api, service.account_id, sid)["size"] == canonical
    assert api.delete(f"{_v1(service.account_id)}/{sid}").status_code == 204


# --- the 2021 API, as the 2021-era RenderingSession.ps1 drives it -------------------------------


def test_2021_script_lifecycle(service: Service, api: httpx.Client, made: list[str]) -> None:
    aid = service.account_id
    base = f"/accounts/{aid}/sessions"
    sid = f"Sample-Session-{uuid.uuid4()}"
    made.append(sid)
    # -CreateSession with vmSize "standard" and maxLeaseTime "4:00:00" -> TotalMinutes 240.
    r = api.put(f"{base}/{sid}", params=PREVIEW, json={"maxLeaseTimeMinutes": 240, "size": "standard"}, headers=JSON_CT)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"] == sid and created["size"] == "Standard" and created["status"] == "Starting"
    assert created["maxLeaseTimeMinutes"] == 240 and created["elapsedTimeMinutes"] == 0
    assert "error" not in created and "hostname" not in created

    # -Poll: GET (with Content-Type) until ready/error/expired, case-insensitively.
    def polled() -> dict[str, Any] | None:
        g = api.get(f"{base}/{sid}", params=PREVIEW, headers=JSON_CT)
        assert g.status_code == 200, g.text
        doc: dict[str, Any] = g.json()
        return doc if doc["status"].lower() in ("ready", "error", "expired") else None

    ready = wait_for(polled, 60, f"{sid} to leave Starting", interval=0.1)
    assert ready["status"] == "Ready"
    # Everything the script prints is there; `error` is omitted, not null.
    for field in ("id", "elapsedTimeMinutes", "hostname", "arrInspectorPort", "handshakePort", "maxLeaseTimeMinutes"):
        assert field in ready, field
    assert "error" not in ready

    # -GetSessions
    listed = api.get(base, params=PREVIEW, headers=JSON_CT)
    assert listed.status_code == 200
    assert sid in {s["id"] for s in listed.json()["sessions"]}

    # -UpdateSession -MaxLeaseTime 5:00:00
    patched = api.patch(f"{base}/{sid}", params=PREVIEW, json={"maxLeaseTimeMinutes": 300}, headers=JSON_CT)
    assert patched.status_code == 200, patched.text
    assert patched.json()["maxLeaseTimeMinutes"] == 300 and patched.json()["status"] == "Ready"

    # The v1 window onto this (non-GUID) session.
    props = _props(api, aid, sid)
    assert props["sessionId"] == sid and props["sessionStatus"] == "Ready"
    assert props["sessionMaxLeaseTime"] == "05:00:00"
    assert (props["sessionHostname"], props["handshakePort"]) == (ready["hostname"], ready["handshakePort"])

    # -StopSession: POST :stop with Content-Type: application/json and no body.
    stopped = api.post(f"{base}/{sid}/:stop", params=PREVIEW, headers=JSON_CT, content=b"")
    assert stopped.status_code == 204 and stopped.content == b""
    assert "content-type" not in stopped.headers
    after = session_doc(api, aid, sid)
    assert after["status"] == "Stopped" and "hostname" not in after and "handshakePort" not in after
    assert _props(api, aid, sid)["sessionStatus"] == "Stopped"


def test_whole_number_float_lease_is_accepted(service: Service, api: httpx.Client, made: list[str]) -> None:
    # PowerShell's TimeSpan.TotalMinutes is a double.
    sid = f"float-lease-{uuid.uuid4().hex[:8]}"
    made.append(sid)
    r = api.put(
        f"/accounts/{service.account_id}/sessions/{sid}",
        params=PREVIEW,
        content=b'{"maxLeaseTimeMinutes": 30.0, "size": "standard"}',
        headers=JSON_CT,
    )
    assert r.status_code == 201, r.text
    assert r.json()["maxLeaseTimeMinutes"] == 30


def test_two_windows_onto_one_session(service: Service, api: httpx.Client, made: list[str]) -> None:
    aid = service.account_id
    base = f"/accounts/{aid}/sessions"

    # Made by v1, changed and stopped by 2021, watched through v1.
    r = _v1_create(api, aid, {"maxLeaseTime": "1:00:00", "size": "Standard"}, made)
    assert r.status_code == 202
    a = r.json()["sessionId"]
    assert session_doc(api, aid, a)["maxLeaseTimeMinutes"] == 60
    wait_status(api, aid, a, "Ready", timeout=60)
    assert _props(api, aid, a)["sessionStatus"] == "Ready"
    assert api.patch(f"{base}/{a}", params=V21, json={"maxLeaseTimeMinutes": 90}).status_code == 200
    assert _props(api, aid, a)["sessionMaxLeaseTime"] == "01:30:00"
    assert api.post(f"{base}/{a}/:stop", params=V21).status_code == 204
    assert _props(api, aid, a)["sessionStatus"] == "Stopped"

    # Made by 2021, changed and stopped by v1, watched through 2021.
    b = f"windows-{uuid.uuid4().hex[:8]}"
    made.append(b)
    assert api.put(f"{base}/{b}", params=V21, json={"maxLeaseTimeMinutes": 60, "size": "Standard"}).status_code == 201
    assert _props(api, aid, b)["sessionMaxLeaseTime"] == "01:00:00"
    assert api.patch(f"{_v1(aid)}/{b}", json={"maxLeaseTime": "2:00:00"}).status_code == 200
    assert session_doc(api, aid, b)["maxLeaseTimeMinutes"] == 120
    assert b in {s["sessionId"] for s in api.get(_v1(aid)).json()["sessions"]}
    assert api.delete(f"{_v1(aid)}/{b}").status_code == 204
    assert session_doc(api, aid, b)["status"] == "Stopped"
    assert b not in _live_ids(api, aid)


# --- leases and bad v1 input ---------------------------------------------------------------------


def test_one_day_is_the_longest_v1_lease(service: Service, api: httpx.Client, made: list[str]) -> None:
    aid = service.account_id
    r = _v1_create(api, aid, {"maxLeaseTime": "1.00:00:00", "size": "standard"}, made)
    assert r.status_code == 202, r.text
    sid = r.json()["sessionId"]
    assert _props(api, aid, sid)["sessionMaxLeaseTime"] == "1.00:00:00"
    assert session_doc(api, aid, sid)["maxLeaseTimeMinutes"] == 1440
    # A one-day lease can't be extended further.
    r = api.patch(f"{_v1(aid)}/{sid}", json={"maxLeaseTime": "1.00:01:00"})
    assert r.status_code == 400
    assert session_doc(api, aid, sid)["maxLeaseTimeMinutes"] == 1440
    assert api.delete(f"{_v1(aid)}/{sid}").status_code == 204

    before = _live_ids(api, aid)
    for too_long in ("1.00:00:01", "1.00:01:00", "1.1:0:0", "2.00:00:00"):
        r = _v1_create(api, aid, {"maxLeaseTime": too_long, "size": "standard"}, made)
        err = _assert_error(r, 400, "BadRequest")
        assert err["target"] == "maxLeaseTime"
        assert err["message"].startswith("The maxLeaseTime value cannot exceed"), err
    assert _live_ids(api, aid) == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"maxLeaseTime": 240, "size": "standard"}, "Invalid value for 'maxLeaseTime': expected a string, got 240."),
        (
            {"maxLeaseTime": "four hours", "size": "standard"},
            "Invalid value for 'maxLeaseTime': 'four hours' is not a time span; use hh:mm:ss, for example 4:00:00.",
        ),
        (
            {"maxLeaseTime": "4:61:00", "size": "standard"},
            "Invalid value for 'maxLeaseTime': '4:61:00' is not a time span: hours must be < 24, "
            "minutes and seconds < 60.",
        ),
        ({"maxLeaseTime": "-1:00:00", "size": "standard"}, "The maxLeaseTime value cannot be negative."),
        ({"size": "standard"}, "The 'maxLeaseTime' field is required."),
        ({"maxLeaseTime": "4:0:0"}, "The 'size' field is required."),
        ({"maxLeaseTime": "4:0:0", "size": "Huge"}, "Unknown session size 'Huge'; expected one of: Standard, Premium."),
        (
            {"maxLeaseTime": "4:0:0", "size": "standard", "models": ["https://acct.blob.core.windows.net/models"]},
            "Preloading models at creation is not supported; load them after connecting.",
        ),
    ],
)
def test_bad_v1_create_changes_nothing(
    service: Service, api: httpx.Client, made: list[str], body: dict[str, Any], message: str
) -> None:
    before = _live_ids(api, service.account_id)
    r = _v1_create(api, service.account_id, body, made)
    _assert_error(r, 400, "BadRequest", message)
    assert _live_ids(api, service.account_id) == before


def test_v1_unknown_and_invalid_session_ids(service: Service, api: httpx.Client) -> None:
    aid = service.account_id
    ghost = str(uuid.uuid4())
    missing = f"No session with the ID '{ghost}' exists in this account."
    _assert_error(api.get(f"{_v1(aid)}/{ghost}/properties"), 404, "NotFound", missing)
    _assert_error(api.patch(f"{_v1(aid)}/{ghost}", json={"maxLeaseTime": "5:0:0"}), 404, "NotFound", missing)
    _assert_error(api.delete(f"{_v1(aid)}/{ghost}"), 404, "NotFound", missing)
    err = _assert_error(api.get(f"{_v1(aid)}/a.b/properties"), 400, "BadRequest")
    assert err["message"].startswith("The session ID 'a.b' is invalid")
    # v1 needs no api-version, but also needs a token.
    with service.http() as anon:
        r = anon.get(_v1(aid))
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
