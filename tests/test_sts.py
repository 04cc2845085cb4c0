"""The STS token endpoint over real HTTPS, exactly as ARR's Mixed Reality STS answered (reference §2, §12.1)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from azure.mixedreality.authentication._utils import retrieve_jwt_expiration_timestamp
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from openrr.accounts.sts import REUSE_WINDOW_S, TokenService
from openrr.store.db import Database
from openrr.store.secretbox import SecretBox
from tests.harness import Service, create_account, openrr

MS_CV = re.compile(r"[A-Za-z0-9+/]{22}\.0")
STS_VERSION = {"api-version": "2019-02-28-preview"}
DAY_S = 24 * 3600


def _new_account(service: Service) -> dict[str, str]:
    try:
        return create_account(service.data_dir)
    except subprocess.CalledProcessError as e:  # show why, not just that, the CLI failed
        raise AssertionError(f"openrr account create failed ({e.returncode}):\n{e.stdout}\n{e.stderr}") from e


def _get_token(
    http: httpx.Client, account_id: str, key: str, *, path: str | None = None, params: dict[str, str] | None = None
) -> httpx.Response:
    return http.get(
        path or f"/accounts/{account_id}/token",
        params=params,
        headers={"Authorization": f"Bearer {account_id}:{key}"},
    )


def _assert_token_response(r: httpx.Response) -> str:
    assert r.status_code == 200, (r.status_code, r.headers, r.text)
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.headers["cache-control"] == "no-store,no-cache"
    assert r.headers["pragma"] == "no-cache"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert MS_CV.fullmatch(r.headers["ms-cv"]), r.headers["ms-cv"]
    assert "api-supported-versions" not in r.headers  # a data-plane header, not an STS one
    body = r.json()
    assert list(body) == ["AccessToken"], body  # PascalCase, and nothing else
    token = body["AccessToken"]
    assert isinstance(token, str) and token.count(".") == 2
    return token


def _assert_rejected(r: httpx.Response, status: int = 401) -> None:
    """ARR's STS answered failures with an empty body and no WWW-Authenticate header (observed live): nothing
    says which part of the credential was wrong (issue 9, finding 16)."""
    assert r.status_code == status, (r.status_code, r.headers, r.text)
    assert r.content == b""
    assert r.headers["content-length"] == "0"
    assert "www-authenticate" not in r.headers, r.headers
    assert MS_CV.fullmatch(r.headers["ms-cv"])
    assert r.headers["x-content-type-options"] == "nosniff"


def _signing_public_key(service: Service) -> rsa.RSAPublicKey:
    """The service's real verification key, as it publishes it (the private half is sealed in the store): lets
    the test check the RS256 signature itself."""
    key = serialization.load_pem_public_key((service.data_dir / "sts-public.pem").read_bytes())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def _standard_b64_json(segment: str) -> dict[str, Any]:
    # What the official SDK does: the STANDARD alphabet; `validate=True` so a '-' or '_' is not silently dropped.
    doc: dict[str, Any] = json.loads(base64.b64decode(segment + "=" * (-len(segment) % 4), validate=True))
    return doc


# --- success ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "params"),
    [
        ("/Accounts/{id}/token", STS_VERSION),  # the official SDKs
        ("/accounts/{id}/token", None),  # the docs and PowerShell scripts: lower case, no api-version
        ("/accounts/{id}/token", STS_VERSION),
        ("/Accounts/{id}/token", None),
        ("/ACCOUNTS/{id}/TOKEN", None),
    ],
)
def test_token_path_is_case_insensitive_and_api_version_optional(
    service: Service, template: str, params: dict[str, str] | None
) -> None:
    with service.http() as http:
        r = _get_token(
            http, service.account_id, service.key, path=template.format(id=service.account_id), params=params
        )
    token = _assert_token_response(r)
    # The token really opens the data plane of this account.
    with service.http() as http:
        listed = http.get(
            f"/accounts/{service.account_id}/sessions",
            params={"api-version": "2021-01-01"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert listed.status_code == 200, listed.text


def test_sdk_request_shape_with_correlation_vector(service: Service) -> None:
    with service.http() as http:
        r = http.get(
            f"/Accounts/{service.account_id}/token",
            params=STS_VERSION,
            headers={
                "Authorization": f"Bearer {service.account_id}:{service.key}",
                "X-MRC-CV": "q3Zr8k0Lw2PbN1xYtE5uAa",
                "Accept": "application/json",
            },
        )
    _assert_token_response(r)
    assert r.headers["ms-cv"] != "q3Zr8k0Lw2PbN1xYtE5uAa.0"  # the service's own vector, not an echo


def test_primary_and_secondary_keys_both_work(service: Service) -> None:
    acct = _new_account(service)
    aid = acct["accountId"]
    with service.http() as http:
        for key in (acct["primaryKey"], acct["secondaryKey"]):
            token = _assert_token_response(_get_token(http, aid, key, params=STS_VERSION))
            listed = http.get(
                f"/accounts/{aid}/sessions",
                params={"api-version": "2021-01-01"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert listed.status_code == 200 and listed.json() == {"sessions": []}, listed.text


def test_account_id_in_upper_case_is_the_same_account(service: Service) -> None:
    upper = service.account_id.upper()
    with service.http() as http:
        _assert_token_response(_get_token(http, upper, service.key))


def test_jwt_is_rs256_with_24h_expiry(service: Service) -> None:
    public_key = _signing_public_key(service)
    with service.http() as http:
        before = int(time.time())
        token = _assert_token_response(_get_token(http, service.account_id, service.key, params=STS_VERSION))
        after = int(time.time())
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    # A real RS256 signature by the service's key, not just a header that says so.
    claims = jwt.decode(token, public_key, algorithms=["RS256"], options={"verify_aud": False})
    assert isinstance(claims["exp"], int)
    # A token minted in the last REUSE_WINDOW_S may be handed out again, so it can be up to that much older.
    assert before + DAY_S - REUSE_WINDOW_S - 5 <= claims["exp"] <= after + DAY_S + 5
    # The official SDK's own parser reads the same expiry.
    assert retrieve_jwt_expiration_timestamp(token) == claims["exp"]


def test_repeated_exchanges_get_sdk_decodable_tokens(service: Service) -> None:
    """The SDK decodes the payload with b64decode (standard alphabet): '-' or '_' would break it."""
    tokens: set[str] = set()
    cvs: set[str] = set()
    with service.http() as http:
        for _ in range(150):
            r = _get_token(http, service.account_id, service.key, params=STS_VERSION)
            tokens.add(_assert_token_response(r))
            cvs.add(r.headers["ms-cv"])
    assert len(cvs) == 150  # every response has its own correlation vector
    # Within the reuse window the same token is handed out again (signing is the costly part).
    assert len(tokens) <= 2
    _assert_sdk_decodable(tokens, time.time())


def test_many_freshly_minted_tokens_decode_with_the_standard_alphabet(tmp_path: Path) -> None:
    """The signing code itself, on a real store: every fresh token's payload is SDK-decodable."""
    db = Database(f"sqlite:///{tmp_path / 'sts.db'}")
    db.migrate()
    tokens = TokenService(db, DAY_S, SecretBox(Fernet.generate_key()))
    minted = {tokens.issue(str(uuid.uuid4()), "0123456789abcdef") for _ in range(300)}
    assert len(minted) == 300
    _assert_sdk_decodable(minted, time.time())
    db.dispose()


def _assert_sdk_decodable(tokens: set[str], now: float) -> None:
    for token in tokens:
        header_seg, payload_seg, _sig = token.split(".")
        assert "-" not in payload_seg and "_" not in payload_seg, payload_seg
        payload = _standard_b64_json(payload_seg)
        assert abs(payload["exp"] - (now + DAY_S)) < 120
        assert retrieve_jwt_expiration_timestamp(token) == payload["exp"]
        assert _standard_b64_json(header_seg.replace("-", "+").replace("_", "/"))["alg"] == "RS256"


# --- failures -----------------------------------------------------------------------------------


def test_wrong_key_is_401_with_empty_body(service: Service) -> None:
    with service.http() as http:
        _assert_rejected(_get_token(http, service.account_id, "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk9PT0="))
        _assert_rejected(_get_token(http, service.account_id, service.key + "x", params=STS_VERSION))
        _assert_rejected(_get_token(http, service.account_id, service.key[:-1]))


def test_unknown_account_is_401(service: Service) -> None:
    with service.http() as http:
        _assert_rejected(_get_token(http, str(uuid.uuid4()), service.key))


def test_key_of_another_account_is_401(service: Service) -> None:
    other = _new_account(service)
    with service.http() as http:
        # My account id with the other account's key, and vice versa.
        _assert_rejected(_get_token(http, service.account_id, other["primaryKey"]))
        _assert_rejected(_get_token(http, other["accountId"], service.key))
        # A valid credential of the other account presented on my account's path.
        r = http.get(
            f"/accounts/{service.account_id}/token",
            headers={"Authorization": f"Bearer {other['accountId']}:{other['primaryKey']}"},
        )
        _assert_rejected(r)
        # ... and mine is still good.
        _assert_token_response(_get_token(http, service.account_id, service.key))


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer  :",
        "Basic {id}:{key}",
        "{id}:{key}",
        "Bearer {key}",  # no account id
        "Bearer {id}",  # no key
        "Bearer {id}:",  # empty key
        "Bearer :{key}",  # empty account id
    ],
)
def test_malformed_authorization_header_is_401(service: Service, authorization: str | None) -> None:
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(id=service.account_id, key=service.key)
    with service.http() as http:
        r = http.get(f"/accounts/{service.account_id}/token", headers=headers)
    _assert_rejected(r)


@pytest.mark.parametrize("bad_id", ["not-a-guid", "12345", "6f1c2a9e-0000-4000-8000-00000000abcz"])
def test_non_guid_account_in_path_is_400(service: Service, bad_id: str) -> None:
    with service.http() as http:
        _assert_rejected(_get_token(http, bad_id, service.key), status=400)
        r = http.get(
            f"/accounts/{bad_id}/token", headers={"Authorization": f"Bearer {service.account_id}:{service.key}"}
        )
        _assert_rejected(r, status=400)


def _rotate(service: Service, account_id: str, which: str) -> str:
    """`python -m openrr account rotate-key ID --json --data-dir D`, against the running service's store."""
    which_key = [] if which == "primary" else ["--key", which]  # primary is the default
    out = openrr("account", "rotate-key", account_id, *which_key, "--json", data_dir=service.data_dir, check=False)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["accountId"] == account_id
    key: str = doc[f"{which}Key"]
    return key


def test_key_rotation_retires_the_old_key(service: Service) -> None:
    acct = _new_account(service)
    aid, old_primary, secondary = acct["accountId"], acct["primaryKey"], acct["secondaryKey"]
    with service.http() as http:
        _assert_token_response(_get_token(http, aid, old_primary))

        new_primary = _rotate(service, aid, "primary")
        assert new_primary and new_primary != old_primary

        _assert_rejected(_get_token(http, aid, old_primary))
        _assert_token_response(_get_token(http, aid, new_primary))
        _assert_token_response(_get_token(http, aid, secondary))  # the other key is untouched

        new_secondary = _rotate(service, aid, "secondary")
        _assert_rejected(_get_token(http, aid, secondary))
        _assert_token_response(_get_token(http, aid, new_secondary))
        _assert_token_response(_get_token(http, aid, new_primary))
        # The shared default account is not affected by any of this.
        _assert_token_response(_get_token(http, service.account_id, service.key))
