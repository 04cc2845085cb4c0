"""Every bad request gets the right status and ARR's error body, and changes nothing.

Each test reads the state back afterwards: a rejected create leaves no session, a rejected update leaves the
lease, a rejected stop leaves the session running, and the list is what it was.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from openrr.store.secretbox import SecretBox
from tests.harness import Service, create_account, openrr, running_service, session_doc, wait_for, wait_status
from tests.unit.asgi import assert_error

V21 = {"api-version": "2021-01-01"}
PREVIEW = {"api-version": "2021-01-01-preview"}
SUPPORTED = "2021-01-01-preview, 2021-01-01"
MS_CV = re.compile(r"[A-Za-z0-9+/]{22}\.0")
INVALID_TOKEN = 'Bearer error="invalid_token"'
MAX_BODY = 64 * 1024
GOOD = {"maxLeaseTimeMinutes": 30, "size": "Standard"}


# --- helpers --------------------------------------------------------------------------------------


def _sid(prefix: str = "bad") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _new_account(service: Service) -> dict[str, str]:
    try:
        return create_account(service.data_dir)
    except subprocess.CalledProcessError as e:  # show why, not just that, the CLI failed
        raise AssertionError(f"openrr account create failed ({e.returncode}):\n{e.stdout}\n{e.stderr}") from e


def assert_arr_headers(r: httpx.Response) -> None:
    assert MS_CV.fullmatch(r.headers.get("ms-cv", "")), r.headers
    assert r.headers["api-supported-versions"] == SUPPORTED
    assert r.headers["x-content-type-options"] == "nosniff"


def assert_unauthorized(r: httpx.Response) -> None:
    """ARR's 401: no body, only the RFC 6750 challenge; nothing names the reason (issue 9, finding 16)."""
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.content == b"", r.text
    assert r.headers["www-authenticate"] == INVALID_TOKEN


def _live(api: httpx.Client, account_id: str) -> list[dict[str, Any]]:
    r = api.get(f"/accounts/{account_id}/sessions", params=V21)
    assert r.status_code == 200, r.text
    sessions: list[dict[str, Any]] = r.json()["sessions"]
    return sessions


def _live_ids(api: httpx.Client, account_id: str) -> set[str]:
    return {s["id"] for s in _live(api, account_id)}


def _assert_absent(api: httpx.Client, account_id: str, sid: str) -> None:
    r = api.get(f"/accounts/{account_id}/sessions/{sid}", params=V21)
    assert_error(r, 404, "NotFound", f"No session with the ID '{sid}' exists in this account.")
    assert sid not in _live_ids(api, account_id)


def _stable(doc: dict[str, Any]) -> dict[str, Any]:
    """What a rejected request must not change (elapsed time moves on by itself)."""
    return {k: v for k, v in doc.items() if k != "elapsedTimeMinutes"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _server_signing_key(service: Service) -> rsa.RSAPrivateKey:
    """The service's own STS signing key, from its store (sealed with the secrets key): to make tokens only the
    claims can make bad."""
    with sqlite3.connect(service.data_dir / "openrr.db") as db:
        (sealed,) = db.execute("SELECT private_pem FROM signing_keys ORDER BY created_at DESC LIMIT 1").fetchone()
    pem = SecretBox((service.data_dir / "secrets.key").read_bytes().strip()).open(sealed).encode()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ready(service: Service) -> Iterator[dict[str, Any]]:
    """One Ready session (lease 30) that the tests of this module try, and fail, to change."""
    sid = _sid("victim")
    with service.api() as client:
        r = client.put(f"/accounts/{service.account_id}/sessions/{sid}", params=V21, json=GOOD)
        assert r.status_code == 201, r.text
        try:
            yield wait_status(client, service.account_id, sid, "Ready", timeout=60)
        finally:
            client.post(f"/accounts/{service.account_id}/sessions/{sid}/:stop", params=V21)


def _assert_untouched(api: httpx.Client, account_id: str, before: dict[str, Any]) -> None:
    now = session_doc(api, account_id, before["id"])
    assert _stable(now) == _stable(before)
    assert now["status"] == "Ready" and now["maxLeaseTimeMinutes"] == before["maxLeaseTimeMinutes"]


# --- request bodies: malformed JSON and bad fields are tested in process (tests/unit/test_api_validation.py) --


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_lease_limits_on_create(service: Service, api: httpx.Client, made: list[str]) -> None:
    aid = service.account_id
    sid = _sid("max-lease")
    made.append(sid)
    r = api.put(f"/accounts/{aid}/sessions/{sid}", params=V21, json={"maxLeaseTimeMinutes": 1440, "size": "Standard"})
    assert r.status_code == 201, r.text
    assert r.json()["maxLeaseTimeMinutes"] == 1440
    assert api.post(f"/accounts/{aid}/sessions/{sid}/:stop", params=V21).status_code == 204


# --- session ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_id", "shown"),
    [
        ("a" * 257, "a" * 61 + "..."),
        ("a.b", "a.b"),
        ("a%20b", "a b"),
        ("a%2Eb", "a.b"),
        ("a+b", "a+b"),
        ("a~b", "a~b"),
        ("a:b", "a:b"),
        ("s%C3%BC%C3%9F", "süß"),  # unicode letters are not ARR letters
        ("%E3%82%BB%E3%83%83%E3%82%B7%E3%83%A7%E3%83%B3", "セッション"),
        # An encoded '/' splits the decoded path, so no operation matches; the id is still what is wrong.
        ("a%2Fb", "a/b"),
        ("%2E%2E", ".."),
        ("..%2F..%2Fx", "../../x"),
    ],
)
def test_illegal_session_ids_are_400_and_change_nothing(
    service: Service, api: httpx.Client, raw_id: str, shown: str
) -> None:
    aid = service.account_id
    decoded_len = len(shown) if not shown.endswith("...") else 257
    message = (
        f"The session ID '{shown}' is invalid: it must be 1 to 256 characters long and contain only "
        f"letters, digits, '-' and '_' (this one has {decoded_len} characters)."
    )
    before = _live_ids(api, aid)
    path = f"/accounts/{aid}/sessions/{raw_id}"
    assert_error(api.put(path, params=V21, json=GOOD), 400, "BadRequest", message, "sessionId")
    assert_error(api.get(path, params=V21), 400, "BadRequest", message, "sessionId")
    assert_error(api.patch(path, params=V21, json={"maxLeaseTimeMinutes": 60}), 400, "BadRequest", message)
    assert_error(api.post(path + "/:stop", params=V21), 400, "BadRequest", message, "sessionId")
    assert _live_ids(api, aid) == before


def test_longest_legal_session_id(service: Service, api: httpx.Client, made: list[str]) -> None:
    sid = "A-z_9" + "x" * 251
    assert len(sid) == 256
    made.append(sid)
    r = api.put(f"/accounts/{service.account_id}/sessions/{sid}", params=V21, json=GOOD)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == sid
    # Ids are case-sensitive: the lower-case twin is another (absent) session.
    _assert_absent(api, service.account_id, sid.lower())
    assert api.post(f"/accounts/{service.account_id}/sessions/{sid}/:stop", params=V21).status_code == 204


# --- api-version ----------------------------------------------------------------------------------

REQUIRED = "The api-version query parameter is required. Supported versions: 2021-01-01, 2021-01-01-preview."
UNSUPPORTED = "The api-version '{}' is not supported. Supported versions: 2021-01-01, 2021-01-01-preview."


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, REQUIRED),
        ({"api-version": ""}, REQUIRED),
        ({"api-version": "2019-02-28-preview"}, UNSUPPORTED.format("2019-02-28-preview")),
        ({"api-version": "2022-01-01"}, UNSUPPORTED.format("2022-01-01")),
        ({"apiversion": "2021-01-01"}, REQUIRED),
    ],
)
def test_missing_or_unknown_api_version_is_400_and_changes_nothing(
    service: Service, api: httpx.Client, ready: dict[str, Any], params: dict[str, str], message: str
) -> None:
    aid, sid = service.account_id, _sid()
    base = f"/accounts/{aid}/sessions"
    before = _live_ids(api, aid)
    for r in (
        api.put(f"{base}/{sid}", params=params, json=GOOD),
        api.get(f"{base}/{ready['id']}", params=params),
        api.get(base, params=params),
        api.patch(f"{base}/{ready['id']}", params=params, json={"maxLeaseTimeMinutes": 60}),
        api.post(f"{base}/{ready['id']}/:stop", params=params),
    ):
        assert_error(r, 400, "BadRequest", message, "api-version")
        assert_arr_headers(r)
    _assert_absent(api, aid, sid)
    _assert_untouched(api, aid, ready)
    assert _live_ids(api, aid) == before


# --- tokens ---------------------------------------------------------------------------------------


def _forge(service: Service, **changes: Any) -> str:
    """A token with the service's own key and a real token's claims, changed as asked."""
    real = service.token()
    claims = jwt.decode(real, options={"verify_signature": False})
    claims.update(changes)
    header = jwt.get_unverified_header(real)
    return jwt.encode(claims, _server_signing_key(service), algorithm="RS256", headers={"kid": header["kid"]})


def _bad_tokens(service: Service) -> dict[str, tuple[str | None, str | None]]:
    """name -> (Authorization header or None for none, exact message or None for 'The access token is invalid')."""
    real = service.token()
    head, payload, sig = real.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    other = _new_account(service)["accountId"]

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    by_stranger = jwt.encode(claims, stranger, algorithm="RS256", headers=jwt.get_unverified_header(real))

    lengthened = {**claims, "exp": claims["exp"] + 365 * 24 * 3600}
    rebadged = {**claims, "sub": other, "accountId": other}

    def unsigned(alg: str, key: bytes | None) -> str:
        h = _b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        p = _b64url(json.dumps(claims).encode())
        s = "" if key is None else _b64url(hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest())
        return f"{h}.{p}.{s}"

    public_pem = (
        _server_signing_key(service)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    now = int(time.time())
    return {
        "missing": (None, "An 'Authorization: Bearer <access token>' header is required."),
        "basic-scheme": (f"Basic {real}", "An 'Authorization: Bearer <access token>' header is required."),
        "no-token": ("Bearer", "An 'Authorization: Bearer <access token>' header is required."),
        "garbage": ("Bearer garbage", None),
        "account-key-not-token": (f"Bearer {service.account_id}:{service.key}", None),
        "two-segments": (f"Bearer {head}.{payload}", None),
        "signed-by-another-key": (f"Bearer {by_stranger}", None),
        "tampered-expiry": (f"Bearer {head}.{_b64url(json.dumps(lengthened).encode())}.{sig}", None),
        "tampered-account": (f"Bearer {head}.{_b64url(json.dumps(rebadged).encode())}.{sig}", None),
        "truncated-signature": (f"Bearer {real[:-8]}", None),
        "alg-none": (f"Bearer {unsigned('none', None)}", None),
        "hs256-with-public-key": (f"Bearer {unsigned('HS256', public_pem)}", None),
        "expired": (
            f"Bearer {_forge(service, iat=now - 2 * 86400, exp=now - 120)}",
            "The access token has expired.",
        ),
    }


def test_bad_tokens_are_401_and_change_nothing(service: Service, api: httpx.Client, ready: dict[str, Any]) -> None:
    aid = service.account_id
    base = f"/accounts/{aid}/sessions"
    # Control: a token made the same way but valid is accepted, so the rejections below are about the flaw.
    good = _forge(service, exp=int(time.time()) + 600)
    with service.http() as anon:
        assert anon.get(base, params=V21, headers={"Authorization": f"Bearer {good}"}).status_code == 200

        before = _live_ids(api, aid)
        for name, (authorization, _message) in _bad_tokens(service).items():
            headers = {} if authorization is None else {"Authorization": authorization}
            sid = _sid(name)
            for r in (
                anon.put(f"{base}/{sid}", params=V21, json=GOOD, headers=headers),
                anon.get(f"{base}/{ready['id']}", params=V21, headers=headers),
                anon.get(base, params=V21, headers=headers),
                anon.patch(f"{base}/{ready['id']}", params=V21, json={"maxLeaseTimeMinutes": 60}, headers=headers),
                anon.post(f"{base}/{ready['id']}/:stop", params=V21, headers=headers),
                anon.post(
                    f"/v1/accounts/{aid}/sessions/create",
                    json={"maxLeaseTime": "1:0:0", "size": "Standard"},
                    headers=headers,
                ),
                anon.delete(f"/v1/accounts/{aid}/sessions/{ready['id']}", headers=headers),
            ):
                assert_unauthorized(r)
                assert_arr_headers(r)
            _assert_absent(api, aid, sid)
    _assert_untouched(api, aid, ready)
    assert _live_ids(api, aid) == before


def test_token_of_a_deleted_account_is_401(service: Service) -> None:
    acct = _new_account(service)
    token = service.token(acct["accountId"], acct["primaryKey"])
    base = f"/accounts/{acct['accountId']}/sessions"
    with service.http() as http:
        auth = {"Authorization": f"Bearer {token}"}
        assert http.get(base, params=V21, headers=auth).status_code == 200
        out = openrr("account", "delete", acct["accountId"], "--json", data_dir=service.data_dir, check=False)
        assert out.returncode == 0, out.stderr
        r = http.put(f"{base}/{_sid()}", params=V21, json=GOOD, headers=auth)
        assert_unauthorized(r)


def test_token_of_another_account_is_403_and_changes_nothing(service: Service, api: httpx.Client) -> None:
    b = _new_account(service)
    bid = b["accountId"]
    base_b = f"/accounts/{bid}/sessions"
    with service.api(bid, b["primaryKey"]) as api_b:
        sid = _sid("b-owned")
        assert api_b.put(f"{base_b}/{sid}", params=V21, json=GOOD).status_code == 201
        try:
            before = wait_status(api_b, bid, sid, "Ready", timeout=60)
            new_sid = _sid("intruder")
            # `api` holds a valid token of the default account A.
            attempts = [
                api.get(f"{base_b}/{sid}", params=V21),
                api.get(f"{base_b}/{_sid('nobody')}", params=V21),  # 403, not 404: nothing leaks
                api.get(base_b, params=V21),
                api.put(f"{base_b}/{sid}", params=V21, json={"maxLeaseTimeMinutes": 99, "size": "Premium"}),
                api.put(f"{base_b}/{new_sid}", params=V21, json=GOOD),
                api.patch(f"{base_b}/{sid}", params=V21, json={"maxLeaseTimeMinutes": 600}),
                api.post(f"{base_b}/{sid}/:stop", params=V21),
                api.get(f"/v1/accounts/{bid}/sessions/{sid}/properties"),
                api.get(f"/v1/accounts/{bid}/sessions"),
                api.patch(f"/v1/accounts/{bid}/sessions/{sid}", json={"maxLeaseTime": "10:0:0"}),
                api.delete(f"/v1/accounts/{bid}/sessions/{sid}"),
                api.post(f"/v1/accounts/{bid}/sessions/create", json={"maxLeaseTime": "1:0:0", "size": "Standard"}),
                # Upper-case spelling of B's id is still B.
                api.get(f"/accounts/{bid.upper()}/sessions/{sid}", params=V21),
            ]
            for r in attempts:
                assert_error(r, 403, "Forbidden", "The access token was not issued for this account.")
                assert MS_CV.fullmatch(r.headers["ms-cv"])
            now = session_doc(api_b, bid, sid)
            assert _stable(now) == _stable(before)
            assert now["status"] == "Ready" and now["maxLeaseTimeMinutes"] == 30 and now["size"] == "Standard"
            _assert_absent(api_b, bid, new_sid)
            assert _live_ids(api_b, bid) == {sid}
        finally:
            assert api_b.post(f"{base_b}/{sid}/:stop", params=V21).status_code == 204


# --- paths and methods (non-GUID accounts and unknown paths: tests/unit/test_api_validation.py) -------------


def test_wrong_method_is_405_with_arr_body(service: Service, api: httpx.Client, ready: dict[str, Any]) -> None:
    r = api.delete(f"/accounts/{service.account_id}/sessions/{ready['id']}", params=V21)
    assert_error(r, 405, "MethodNotAllowed", "This path does not support the method used.")
    _assert_untouched(api, service.account_id, ready)


# --- updates --------------------------------------------------------------------------------------


def test_bad_updates_leave_the_lease(service: Service, api: httpx.Client, ready: dict[str, Any]) -> None:
    aid, sid = service.account_id, ready["id"]
    url = f"/accounts/{aid}/sessions/{sid}"
    not_larger = "The maxLeaseTimeMinutes value must be larger than the current value (30)."
    cases: list[tuple[bytes, int, str, str]] = [
        (_json({"maxLeaseTimeMinutes": 20}), 422, "UnprocessableEntity", not_larger),
        (_json({"maxLeaseTimeMinutes": 30}), 422, "UnprocessableEntity", not_larger),
        (_json({"maxLeaseTimeMinutes": 0}), 422, "UnprocessableEntity", not_larger),
        (
            _json({"maxLeaseTimeMinutes": 1441}),
            422,
            "UnprocessableEntity",
            "The maxLeaseTimeMinutes value cannot exceed 1440 (24 hours).",
        ),
        (_json({"maxLeaseTimeMinutes": -1}), 400, "BadRequest", "The maxLeaseTimeMinutes value cannot be negative."),
        (
            _json({"maxLeaseTimeMinutes": "60"}),
            400,
            "BadRequest",
            "Invalid value for 'maxLeaseTimeMinutes': expected an integer number of minutes, got the string '60'.",
        ),
        (
            _json({"maxLeaseTimeMinutes": 60.5}),
            400,
            "BadRequest",
            "Invalid value for 'maxLeaseTimeMinutes': expected an integer number of minutes, got 60.5.",
        ),
        (_json({}), 400, "BadRequest", "The 'maxLeaseTimeMinutes' field is required."),
        (_json({"maxLeaseTime": 60}), 400, "BadRequest", "The 'maxLeaseTimeMinutes' field is required."),
        (b"", 400, "BadRequest", "The request body is empty; a JSON object is required."),
        (b"[60]", 400, "BadRequest", "The request body must be a JSON object, not an array."),
    ]
    for raw, status, code, message in cases:
        r = api.patch(url, params=V21, content=raw, headers={"Content-Type": "application/json"})
        assert_error(r, status, code, message)
        assert_arr_headers(r)
        assert "cache-control" not in r.headers
        _assert_untouched(api, aid, ready)
    r = api.patch(f"/accounts/{aid}/sessions/{_sid('ghost')}", params=V21, json={"maxLeaseTimeMinutes": 60})
    assert_error(r, 404, "NotFound")


def test_update_of_a_stopped_session_is_422(service: Service, api: httpx.Client, made: list[str]) -> None:
    aid, sid = service.account_id, _sid("stopped")
    made.append(sid)
    url = f"/accounts/{aid}/sessions/{sid}"
    assert api.put(url, params=V21, json=GOOD).status_code == 201
    # The largest lease is accepted on update ...
    ok = api.patch(url, params=V21, json={"maxLeaseTimeMinutes": 1440})
    assert ok.status_code == 200 and ok.json()["maxLeaseTimeMinutes"] == 1440
    assert api.patch(url, params=V21, json={"maxLeaseTimeMinutes": 60}).status_code == 422
    assert api.post(f"{url}/:stop", params=V21).status_code == 204
    before = session_doc(api, aid, sid)
    assert before["status"] == "Stopped"
    # ... but nothing is, once stopped (not even through v1).
    r = api.patch(url, params=V21, json={"maxLeaseTimeMinutes": 1440})
    assert_error(
        r, 422, "UnprocessableEntity", "The session is Stopped; only a Starting or Ready session can be updated."
    )
    r = api.patch(url, params=V21, json={"maxLeaseTimeMinutes": 10})
    assert_error(r, 422, "UnprocessableEntity")
    assert api.patch(f"/v1/accounts/{aid}/sessions/{sid}", json={"maxLeaseTime": "1.00:00:00"}).status_code == 400
    after = session_doc(api, aid, sid)
    assert after == before


def test_oversized_bodies_are_413_and_change_nothing(
    service: Service, api: httpx.Client, ready: dict[str, Any], made: list[str]
) -> None:
    aid = service.account_id
    message = f"The request body is larger than {MAX_BODY} bytes."

    def padded(doc: dict[str, Any], size: int) -> bytes:
        raw = json.dumps({**doc, "pad": ""}).encode()
        out = json.dumps({**doc, "pad": "x" * (size - len(raw))}).encode()
        assert len(out) == size
        return out

    ct = {"Content-Type": "application/json"}
    url = f"/accounts/{aid}/sessions/{ready['id']}"
    r = api.patch(url, params=V21, content=padded({"maxLeaseTimeMinutes": 1000}, MAX_BODY + 1), headers=ct)
    assert_error(r, 413, "PayloadTooLarge", message)
    _assert_untouched(api, aid, ready)

    sid = _sid("big")
    r = api.put(f"/accounts/{aid}/sessions/{sid}", params=V21, content=padded(GOOD, MAX_BODY + 1), headers=ct)
    assert_error(r, 413, "PayloadTooLarge", message)
    r = api.put(f"/accounts/{aid}/sessions/{sid}", params=V21, content=b" " * (MAX_BODY * 4), headers=ct)
    assert_error(r, 413, "PayloadTooLarge", message)
    _assert_absent(api, aid, sid)

    before = _live_ids(api, aid)
    v1_body = padded({"maxLeaseTime": "1:0:0", "size": "Standard"}, MAX_BODY + 1)
    r = api.post(f"/v1/accounts/{aid}/sessions/create", content=v1_body, headers=ct)
    assert_error(r, 413, "PayloadTooLarge", message)
    assert _live_ids(api, aid) == before

    # Exactly the limit is fine.
    made.append(sid)
    r = api.put(f"/accounts/{aid}/sessions/{sid}", params=V21, content=padded(GOOD, MAX_BODY), headers=ct)
    assert r.status_code == 201, r.text
    assert api.post(f"/accounts/{aid}/sessions/{sid}/:stop", params=V21).status_code == 204


# --- headers and the idempotent PUT ---------------------------------------------------------------


def test_idempotent_put_and_arr_headers(service: Service, api: httpx.Client, made: list[str]) -> None:
    aid, sid = service.account_id, _sid("idem")
    made.append(sid)
    url = f"/accounts/{aid}/sessions/{sid}"
    responses: list[httpx.Response] = []

    created = api.put(url, params=V21, json=GOOD)
    responses.append(created)
    assert created.status_code == 201, created.text
    first = created.json()

    # The same settings again (a retry) -> 200 with the same session; size matches case-insensitively.
    for body, params in ((GOOD, V21), ({"maxLeaseTimeMinutes": 30, "size": "standard"}, PREVIEW)):
        again = api.put(url, params=params, json=body)
        responses.append(again)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == sid and again.json()["creationTime"] == first["creationTime"]

    # Other settings under the same id -> 409, and the session keeps its own.
    for body in ({"maxLeaseTimeMinutes": 31, "size": "Standard"}, {"maxLeaseTimeMinutes": 30, "size": "Premium"}):
        r = api.put(url, params=V21, json=body)
        responses.append(r)
        assert_error(r, 409, "Conflict", "A resource already exists under the given ID.")
    doc = session_doc(api, aid, sid)
    assert (
        doc["size"] == "Standard" and doc["maxLeaseTimeMinutes"] == 30 and doc["creationTime"] == first["creationTime"]
    )

    got = api.get(url, params=V21)
    listed = api.get(f"/accounts/{aid}/sessions", params=V21)
    patched = api.patch(url, params=V21, json={"maxLeaseTimeMinutes": 45})
    missing = api.get(f"/accounts/{aid}/sessions/{_sid('ghost')}", params=V21)
    stopped = api.post(f"{url}/:stop", params=V21)
    responses += [got, listed, patched, missing, stopped]
    assert [r.status_code for r in (got, listed, patched, missing, stopped)] == [200, 200, 200, 404, 204]

    for r in responses:
        assert_arr_headers(r)
        if r.request.method == "GET":
            assert r.headers["cache-control"] == "no-store,no-cache" and r.headers["pragma"] == "no-cache"
        else:
            assert "cache-control" not in r.headers and "pragma" not in r.headers
        if r.status_code != 204:
            assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert stopped.content == b"" and "content-type" not in stopped.headers
    # A new correlation vector for every response.
    assert len({r.headers["ms-cv"] for r in responses}) == len(responses)
    # A stopped session's id stays taken: other settings still conflict.
    assert_error(api.put(url, params=V21, json={"maxLeaseTimeMinutes": 5, "size": "Premium"}), 409, "Conflict")


# --- throttling (own service) ---------------------------------------------------------------------


def test_throttling_is_429_with_retry_after_per_account(tmp_path: Path) -> None:
    data_dir = tmp_path / "throttled"
    with running_service(
        data_dir, "--warm-pool", "Standard=0", "--rate-limit-per-s", "1", "--rate-limit-burst", "3"
    ) as svc:
        aid = svc.account_id
        other = create_account(data_dir)
        other_token = svc.token(other["accountId"], other["primaryKey"])  # from the other account's bucket
        base = f"/accounts/{aid}/sessions"
        with svc.http() as http:
            start = time.monotonic()
            tok = http.get(f"/accounts/{aid}/token", headers={"Authorization": f"Bearer {aid}:{svc.key}"})
            assert tok.status_code == 200
            auth = {"Authorization": f"Bearer {tok.json()['AccessToken']}"}
            statuses = [tok.status_code]
            while statuses[-1] != 429 and len(statuses) < 30:
                statuses.append(http.get(base, params=V21, headers=auth).status_code)
            elapsed = time.monotonic() - start
            throttled = http.get(base, params=V21, headers=auth)
            sid = _sid("throttled")
            put = http.put(f"{base}/{sid}", params=V21, json=GOOD, headers=auth)
            sts = http.get(f"/accounts/{aid}/token", headers={"Authorization": f"Bearer {aid}:{svc.key}"})
            theirs = http.get(
                f"/accounts/{other['accountId']}/sessions",
                params=V21,
                headers={"Authorization": f"Bearer {other_token}"},
            )

            # The burst of 3 (the token request counts) and what the rate refilled meanwhile, then 429.
            assert statuses[-1] == 429, statuses
            allowed = len(statuses) - 1
            assert 3 <= allowed <= 3 + int(elapsed), (statuses, elapsed)
            if elapsed < 1:
                assert len(statuses) == 4  # the 4th quick request
            for r in (throttled, put):
                assert_error(r, 429, "TooManyRequests", "Too many requests for this account; retry after 1 seconds.")
                assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 1
                assert_arr_headers(r)
            # The STS is throttled alike, and says so in WWW-Authenticate.
            assert sts.status_code == 429 and int(sts.headers["retry-after"]) >= 1
            assert sts.headers["www-authenticate"]
            # Another account is not throttled by this one.
            assert theirs.status_code == 200, theirs.text

            # Once the bucket refills, the throttled PUT turns out never to have happened.
            def let_through() -> httpx.Response | None:
                r = http.get(f"{base}/{sid}", params=V21, headers=auth)
                return r if r.status_code != 429 else None

            after = wait_for(let_through, 10, "the account's rate limit to let a request through")
            assert_error(after, 404, "NotFound")
