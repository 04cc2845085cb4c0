"""Every bad request gets the right status and ARR's error body, and changes nothing: in process (tests/unit/asgi.py).

Bodies, field types, enums, ids and accounts, on both API generations and on conversions. The same checks over a
real socket, with ARR's headers and throttling, are in tests/test_bad_input.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.unit.asgi import GOOD, V21, InProcess, assert_error, in_process

pytestmark = pytest.mark.anyio
IN_URI = "https://contosostorage01.blob.core.windows.net/arrinput"
OUT_URI = "https://contosostorage01.blob.core.windows.net/arroutput"
CONVERSION: dict[str, Any] = {
    "settings": {
        "inputLocation": {
            "storageContainerUri": IN_URI,
            "storageContainerReadListSas": "?sv=2020-08-04&sr=c&sp=rl&sig=input",
            "relativeInputAssetPath": "house.fbx",
        },
        "outputLocation": {
            "storageContainerUri": OUT_URI,
            "storageContainerWriteSas": "?sv=2020-08-04&sr=c&sp=w&sig=o",
        },
    }
}
"""A good conversion request (SAS): nothing fetches it, as no conversion worker runs in process."""


@pytest.fixture(scope="module")
async def arr(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProcess]:
    """One service for the module: every request here is refused and changes nothing (each test checks)."""
    async with in_process(tmp_path_factory.mktemp("data")) as service:
        yield service


def _sid(prefix: str = "bad") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


async def _assert_absent(arr: InProcess, sid: str) -> None:
    r = await arr.api.get(f"{arr.sessions}/{sid}", params=V21)
    assert_error(r, 404, "NotFound", f"No session with the ID '{sid}' exists in this account.")


# --- request bodies (moved here from tests/test_bad_input.py) --------------------------------------

BAD_BODIES: list[tuple[bytes, str]] = [
    (b"{bad", "The request body is not valid JSON: Expecting property name"),
    (b'{"maxLeaseTimeMinutes": 30, "size": "Standard"', "The request body is not valid JSON: "),
    (b'{"maxLeaseTimeMinutes": 30, "size": "\xffStandard"}', "The request body is not valid JSON: 'utf-8' codec"),
    (b"", "The request body is empty; a JSON object is required."),
    (b"   \n", "The request body is empty; a JSON object is required."),
    (b"[]", "The request body must be a JSON object, not an array."),
    (b'[{"maxLeaseTimeMinutes": 30, "size": "Standard"}]', "The request body must be a JSON object, not an array."),
    (b'"Standard"', "The request body must be a JSON object, not a string."),
    (b"30", "The request body must be a JSON object, not a number."),
    (b"null", "The request body must be a JSON object, not null."),
    (b"true", "The request body must be a JSON object, not a boolean."),
]

BAD_CREATE_FIELDS: list[tuple[bytes, str, str | None]] = [
    (
        _json({"maxLeaseTimeMinutes": "30", "size": "Standard"}),
        "Invalid value for 'maxLeaseTimeMinutes': expected an integer number of minutes, got the string '30'.",
        "maxLeaseTimeMinutes",
    ),
    (
        _json({"maxLeaseTimeMinutes": True, "size": "Standard"}),
        "Invalid value for 'maxLeaseTimeMinutes': expected an integer number of minutes, got the boolean true.",
        "maxLeaseTimeMinutes",
    ),
    (
        _json({"maxLeaseTimeMinutes": 1.5, "size": "Standard"}),
        "Invalid value for 'maxLeaseTimeMinutes': expected an integer number of minutes, got 1.5.",
        "maxLeaseTimeMinutes",
    ),
    (
        _json({"maxLeaseTimeMinutes": None, "size": "Standard"}),
        "Invalid value for 'maxLeaseTimeMinutes': expected an integer number of minutes, got null.",
        "maxLeaseTimeMinutes",
    ),
    (
        _json({"maxLeaseTimeMinutes": [30], "size": "Standard"}),
        "Invalid value for 'maxLeaseTimeMinutes': expected an integer number of minutes, got an array.",
        "maxLeaseTimeMinutes",
    ),
    (_json({"maxLeaseTimeMinutes": 30, "size": 5}), "Invalid value for 'size': expected a string, got 5.", "size"),
    (
        _json({"maxLeaseTimeMinutes": 30, "size": None}),
        "Invalid value for 'size': expected a string, got null.",
        "size",
    ),
    (
        _json({"maxLeaseTimeMinutes": 30, "size": {"name": "Standard"}}),
        "Invalid value for 'size': expected a string, got an object.",
        "size",
    ),
    (_json({"size": "Standard"}), "The 'maxLeaseTimeMinutes' field is required.", "maxLeaseTimeMinutes"),
    (_json({"maxLeaseTimeMinutes": 30}), "The 'size' field is required.", "size"),
    (_json({}), "The 'maxLeaseTimeMinutes' field is required.", "maxLeaseTimeMinutes"),
    (_json({"MaxLeaseTimeMinutes": 30, "Size": "Standard"}), "The 'maxLeaseTimeMinutes' field is required.", None),
    (
        _json({"maxLeaseTimeMinutes": 30, "size": "Huge"}),
        "Unknown session size 'Huge'; expected one of: Standard, Premium.",
        "size",
    ),
    (
        _json({"maxLeaseTimeMinutes": 30, "size": ""}),
        "Unknown session size ''; expected one of: Standard, Premium.",
        "size",
    ),
    (
        _json({"maxLeaseTimeMinutes": -4, "size": "Standard"}),
        "The maxLeaseTimeMinutes value cannot be negative.",  # ARR's observed text
        "maxLeaseTimeMinutes",
    ),
    (
        _json({"maxLeaseTimeMinutes": 1441, "size": "Standard"}),
        "The maxLeaseTimeMinutes value cannot exceed 1440 (24 hours).",
        "maxLeaseTimeMinutes",
    ),
    (
        _json({"maxLeaseTimeMinutes": 10**30, "size": "Standard"}),
        "The maxLeaseTimeMinutes value cannot exceed 1440 (24 hours).",
        "maxLeaseTimeMinutes",
    ),
]


@pytest.mark.parametrize(("raw", "message_start"), BAD_BODIES)
async def test_malformed_create_body_changes_nothing(arr: InProcess, raw: bytes, message_start: str) -> None:
    sid = _sid()
    r = await arr.api.put(
        f"{arr.sessions}/{sid}", params=V21, content=raw, headers={"Content-Type": "application/json"}
    )
    err = assert_error(r, 400, "BadRequest")
    assert err["message"].startswith(message_start), err
    assert r.headers["api-supported-versions"] == "2021-01-01-preview, 2021-01-01"
    await _assert_absent(arr, sid)
    assert await arr.live_ids() == set()


@pytest.mark.parametrize(("raw", "message", "target"), BAD_CREATE_FIELDS)
async def test_bad_create_fields_change_nothing(arr: InProcess, raw: bytes, message: str, target: str | None) -> None:
    sid = _sid()
    r = await arr.api.put(
        f"{arr.sessions}/{sid}", params=V21, content=raw, headers={"Content-Type": "application/json"}
    )
    assert_error(r, 400, "BadRequest", message, target)
    await _assert_absent(arr, sid)
    assert await arr.live_ids() == set()


async def test_conversion_bodies_of_the_wrong_shape_are_400(arr: InProcess) -> None:
    url = f"{arr.conversions}/{_sid('conv')}"
    settings = CONVERSION["settings"]
    uri_5 = {**settings, "inputLocation": {**settings["inputLocation"], "storageContainerUri": 5}}
    for doc, message, target in (
        (
            {"settings": {"outputLocation": settings["outputLocation"]}},
            "The 'settings.inputLocation' field is required.",
            "settings.inputLocation",
        ),
        ({"settings": []}, "Invalid value for 'settings': expected an object, got an array.", "settings"),
        (
            {"settings": uri_5},
            "Invalid value for 'settings.inputLocation.storageContainerUri': expected a string, got 5.",
            "settings.inputLocation.storageContainerUri",
        ),
    ):
        assert_error(await arr.api.put(url, params=V21, json=doc), 400, "BadRequest", message, target)
    r = await arr.api.put(url, params=V21, content=b"{", headers={"Content-Type": "application/json"})
    assert assert_error(r, 400, "BadRequest")["message"].startswith("The request body is not valid JSON")
    assert_error(await arr.api.get(url, params=V21), 404, "NotFound")


# --- ids: the same precise 400 whatever is wrong with one, on every operation that takes one --------

ID_RULES = "it must be 1 to 256 characters long and contain only letters, digits, '-' and '_'"
ILLEGAL_IDS = [
    ("a" * 257, "a" * 61 + "...", 257),
    ("a.b", "a.b", 3),
    ("a%20b", "a b", 3),
    ("a%2Eb", "a.b", 3),
    ("a:b", "a:b", 3),
    ("a+b", "a+b", 3),
    ("a~b", "a~b", 3),
    ("s%C3%BC%C3%9F", "süß", 3),  # unicode letters are not ARR letters
    # An encoded '/' splits the decoded path, so that no operation matches; the id is still what is wrong.
    ("a%2Fb", "a/b", 3),
    ("a%2fb", "a/b", 3),
    ("%2F", "/", 1),
    ("%2E%2E", "..", 2),
    ("..%2F..%2Fx", "../../x", 7),
    ("%2E%2E%2Fx", "../x", 4),
]


def _id_message(kind: str, shown: str, length: int) -> str:
    return f"The {kind} ID '{shown}' is invalid: {ID_RULES} (this one has {length} characters)."


@pytest.mark.parametrize(("raw_id", "shown", "length"), ILLEGAL_IDS)
async def test_illegal_ids_are_400_in_both_session_apis(arr: InProcess, raw_id: str, shown: str, length: int) -> None:
    message = _id_message("session", shown, length)
    two = f"{arr.sessions}/{raw_id}"
    v1 = f"/v1{arr.sessions}/{raw_id}"
    for r in (
        await arr.api.put(two, params=V21, json=GOOD),
        await arr.api.put(two + "/", params=V21, json=GOOD),  # old scripts' trailing slash
        await arr.api.get(two, params=V21),
        await arr.api.patch(two, params=V21, json={"maxLeaseTimeMinutes": 60}),
        await arr.api.post(two + "/:stop", params=V21),
        await arr.api.get(v1 + "/properties"),
        await arr.api.patch(v1, json={"maxLeaseTime": "1:0:0"}),
        await arr.api.delete(v1),
    ):
        assert_error(r, 400, "BadRequest", message, "sessionId")
    assert await arr.live_ids() == set()


@pytest.mark.parametrize(("raw_id", "shown", "length"), ILLEGAL_IDS)
async def test_illegal_ids_are_400_in_both_conversion_apis(
    arr: InProcess, raw_id: str, shown: str, length: int
) -> None:
    message = _id_message("conversion", shown, length)
    two = f"{arr.conversions}/{raw_id}"
    for r in (
        await arr.api.put(two, params=V21, json=CONVERSION),
        await arr.api.get(two, params=V21),
        await arr.api.post(two + "/:cancel", params=V21),
        await arr.api.get(f"/v1{two}"),
    ):
        assert_error(r, 400, "BadRequest", message, "conversionId")
    assert (await arr.api.get(arr.conversions, params=V21)).json()["conversions"] == []


async def test_a_bad_id_is_judged_after_the_token_and_the_api_version(arr: InProcess) -> None:
    # Like any operation: no token -> 401 (bare), no api-version -> 400 naming it, and only then the id.
    for raw_id in ("a.b", "a%2Fb"):
        anonymous = await arr.api.get(f"{arr.sessions}/{raw_id}", params=V21, headers={"Authorization": ""})
        assert anonymous.status_code == 401 and anonymous.content == b""
        assert anonymous.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        err = assert_error(await arr.api.get(f"{arr.sessions}/{raw_id}"), 400, "BadRequest")
        assert err["message"].startswith("The api-version query parameter is required.")


async def test_a_good_id_on_an_unknown_path_is_still_404(arr: InProcess) -> None:
    for path in (
        f"{arr.sessions}/ok/x%2Fy",
        f"{arr.sessions}/ok/properties",
        f"{arr.sessions}/ok/:start",
        f"/accounts/{arr.account_id}/nothing",
        f"/accounts/{arr.account_id}/things/a%2Fb",
        f"/v2{arr.sessions}",
        "/nothing/at/all",
    ):
        assert_error(await arr.api.get(path, params=V21), 404, "NotFound", "No API operation matches this path.")


# --- accounts in the path ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("not-a-guid", "not-a-guid"),
        ("12345", "12345"),
        ("6f1c2a9e-0000-4000-8000-00000000abcz", "6f1c2a9e-0000-4000-8000-00000000abcz"),
        ("a%2Fb", "a/b"),
    ],
)
async def test_non_guid_account_in_path_is_400(arr: InProcess, raw: str, shown: str) -> None:
    message = f"The account ID '{shown}' is not a GUID."
    sid = _sid()
    for r in (
        await arr.api.get(f"/accounts/{raw}/sessions", params=V21),
        await arr.api.put(f"/accounts/{raw}/sessions/{sid}", params=V21, json=GOOD),
        await arr.api.get(f"/v1/accounts/{raw}/sessions"),
        await arr.api.post(f"/v1/accounts/{raw}/sessions/create", json={"maxLeaseTime": "1:0:0", "size": "Standard"}),
        await arr.api.get(f"/accounts/{raw}/conversions/{sid}", params=V21),
    ):
        assert_error(r, 400, "BadRequest", message, "accountId")
    await _assert_absent(arr, sid)


async def test_unknown_and_deleted_accounts(arr: InProcess) -> None:
    unknown = str(uuid.uuid4())
    r = await arr.api.put(f"/accounts/{unknown}/sessions/{_sid()}", params=V21, json=GOOD)
    assert_error(r, 403, "Forbidden", "The access token was not issued for this account.")
    r = await arr.api.get(f"/accounts/{unknown}/token", headers={"Authorization": f"Bearer {unknown}:{arr.key}"})
    assert r.status_code == 401
    # A token does not outlive its account (deleting it in this process forgets what was cached).
    other = arr.services.accounts.create()
    token = await arr.token(other.account.account_id, other.primary_key)
    arr.services.accounts.delete(other.account.account_id)
    headers = {"Authorization": f"Bearer {token}"}
    r = await arr.api.get(f"/accounts/{other.account.account_id}/sessions", params=V21, headers=headers)
    assert r.status_code == 401 and r.content == b""
