"""The conversion API over raw HTTPS: ARR's normalisation, idempotent PUT, paging, v1, cancel, linked storage and
every kind of bad input. This service runs no workers (`--conversion-workers 0`), so jobs stay where the API put them.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import Service, create_account, free_port, openrr

V21 = {"api-version": "2021-01-01"}
PREVIEW = {"api-version": "2021-01-01-preview"}
IN_URI = "https://contosostorage01.blob.core.windows.net/arrinput"
OUT_URI = "https://contosostorage01.blob.core.windows.net/arroutput"
IN_SAS = "?sv=2020-08-04&sr=c&sp=rl&sig=SECRETinput%3D"
OUT_SAS = "?sv=2020-08-04&sr=c&sp=w&sig=SECREToutput%3D"
LINK_MESSAGE = (
    "Error accessing connected storage account due to insufficient permissions. Check if the Mixed Reality "
    "resource has correct permissions assigned."
)
STORAGE_KEY = "c2VjcmV0LXN0b3JhZ2Uta2V5LXRoYXQtbXVzdC1uZXZlci1sZWFr"


def body(**changes: Any) -> dict[str, Any]:
    """ARR's §12.3 request; `changes` replace fields, as "inputLocation.blobPrefix" = value (None: remove it)."""
    doc: dict[str, Any] = {
        "settings": {
            "inputLocation": {
                "storageContainerUri": IN_URI,
                "storageContainerReadListSas": IN_SAS,
                "blobPrefix": "house",
                "relativeInputAssetPath": "house.fbx",
            },
            "outputLocation": {
                "storageContainerUri": OUT_URI,
                "storageContainerWriteSas": OUT_SAS,
                "blobPrefix": "conv",
            },
        }
    }
    for path, value in changes.items():
        where, key = path.split(".")
        if value is None:
            doc["settings"][where].pop(key, None)
        else:
            doc["settings"][where][key] = value
    return doc


def _cid(prefix: str = "conv") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def svc(base_dir: Path) -> Iterator[Service]:
    service = Service(
        base_dir / "conversions-api",
        free_port(),
        ["--conversion-workers", "0", "--rate-limit-per-s", "0", "--warm-pool", "Standard=0"],
    ).start()
    yield service
    assert service.stop() == 0


@pytest.fixture
def api(svc: Service) -> Iterator[httpx.Client]:
    with svc.api() as client:
        yield client


def _url(svc: Service, cid: str, account: str | None = None) -> str:
    return f"/accounts/{account or svc.account_id}/conversions/{cid}"


def assert_error(r: httpx.Response, status: int, code: str, message: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    err: dict[str, Any] = r.json()["error"]
    assert list(r.json()) == ["error"] and err["code"] == code, err
    if message is not None:
        assert err["message"] == message, err
    return err


# --- create, get, idempotency ---------------------------------------------------------------------


def test_create_echoes_normalised_settings_and_never_a_sas(svc: Service, api: httpx.Client) -> None:
    cid = _cid()
    r = api.put(_url(svc, cid), params=V21, json=body())
    assert r.status_code == 201, r.text
    assert "SECRET" not in r.text and "Sas" not in r.text
    doc = r.json()
    assert list(doc) == ["id", "creationTime", "settings", "error", "status", "progress"]
    assert doc["id"] == cid and doc["status"] == "NotStarted" and doc["error"] is None and doc["progress"] == 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", doc["creationTime"]), doc["creationTime"]
    assert doc["settings"] == {
        "inputLocation": {"storageContainerUri": IN_URI, "blobPrefix": "house/", "relativeInputAssetPath": "house.fbx"},
        "outputLocation": {
            "storageContainerUri": OUT_URI,
            "blobPrefix": "conv/",
            "outputAssetFilename": "house.arrAsset",
        },
    }
    assert "output" not in doc  # only once Succeeded
    assert r.headers["api-supported-versions"] == "2021-01-01-preview, 2021-01-01"
    got = api.get(_url(svc, cid), params=PREVIEW)
    assert got.status_code == 200 and got.json() == doc
    assert "SECRET" not in got.text


def test_empty_and_absent_optional_fields_mean_the_defaults(svc: Service, api: httpx.Client) -> None:
    # Conversion.ps1 sends "" for the optional values left unset.
    cid = _cid()
    r = api.put(
        _url(svc, cid),
        params=V21,
        json=body(
            **{
                "inputLocation.blobPrefix": "",
                "outputLocation.blobPrefix": None,
                "outputLocation.outputAssetFilename": "",
            }
        ),
    )
    assert r.status_code == 201, r.text
    settings = r.json()["settings"]
    assert "blobPrefix" not in settings["inputLocation"] and "blobPrefix" not in settings["outputLocation"]
    assert settings["outputLocation"]["outputAssetFilename"] == "house.arrAsset"
    named = api.put(
        _url(svc, _cid()),
        params=V21,
        json=body(
            **{"inputLocation.relativeInputAssetPath": "models/v2/testBox.glb", "outputLocation.blobPrefix": "a/b/"}
        ),
    ).json()["settings"]
    assert named["outputLocation"] == {
        "storageContainerUri": OUT_URI,
        "blobPrefix": "a/b/",
        "outputAssetFilename": "testBox.arrAsset",
    }


def test_put_is_idempotent_and_conflicts_on_other_settings(svc: Service, api: httpx.Client) -> None:
    cid = _cid()
    first = api.put(_url(svc, cid), params=V21, json=body())
    assert first.status_code == 201
    again = api.put(_url(svc, cid), params=V21, json=body())
    assert again.status_code == 200 and again.json() == first.json()
    # A retry may carry freshly generated SAS tokens: still the same conversion.
    fresh = api.put(_url(svc, cid), params=V21, json=body(**{"inputLocation.storageContainerReadListSas": "?sig=new"}))
    assert fresh.status_code == 200 and fresh.json() == first.json()
    # Explicitly what the normalisation would have made is the same request too.
    explicit = body(**{"inputLocation.blobPrefix": "house/", "outputLocation.outputAssetFilename": "house.arrAsset"})
    assert api.put(_url(svc, cid), params=V21, json=explicit).status_code == 200
    for changed in (
        body(**{"inputLocation.relativeInputAssetPath": "other.fbx"}),
        body(**{"outputLocation.blobPrefix": "elsewhere"}),
        body(
            **{"outputLocation.storageContainerWriteSas": None, "outputLocation.storageContainerUri": "file:///nowhere"}
        ),
    ):
        r = api.put(_url(svc, cid), params=V21, json=changed)
        if r.status_code == 400:  # the file:// one is refused before it is compared
            continue
        err = assert_error(r, 409, "Conflict", "A resource already exists under the given ID.")
        assert err["target"] == "conversionId"
    assert api.get(_url(svc, cid), params=V21).json() == first.json()


def test_ids_are_case_sensitive(svc: Service, api: httpx.Client) -> None:
    cid = f"Case-{uuid.uuid4().hex[:8]}"
    assert api.put(_url(svc, cid), params=V21, json=body()).status_code == 201
    assert api.put(_url(svc, cid.lower()), params=V21, json=body()).status_code == 201
    assert_error(api.get(_url(svc, cid.upper()), params=V21), 404, "NotFound")


def test_unknown_conversion_is_404_in_both_apis(svc: Service, api: httpx.Client) -> None:
    assert_error(
        api.get(_url(svc, "no-such-conversion"), params=V21),
        404,
        "NotFound",
        "No conversion with the ID 'no-such-conversion' exists in this account.",
    )
    assert_error(api.get(f"/v1/accounts/{svc.account_id}/conversions/no-such-conversion"), 404, "NotFound")
    assert_error(api.post(_url(svc, "no-such-conversion") + "/:cancel", params=V21), 404, "NotFound")


# --- listing --------------------------------------------------------------------------------------


def test_lists_page_by_50_with_next_links_in_both_apis(svc: Service) -> None:
    account = create_account(svc.data_dir)
    aid = account["accountId"]
    with svc.api(aid, account["primaryKey"]) as api:
        empty = api.get(f"/accounts/{aid}/conversions", params=V21)
        assert empty.status_code == 200 and empty.json() == {"conversions": [], "@nextLink": None}
        made = [f"page-{i:03d}" for i in range(55)]
        for cid in made:
            assert api.put(_url(svc, cid, aid), params=V21, json=body()).status_code == 201

        first = api.get(f"/accounts/{aid}/conversions", params=V21).json()
        assert [c["id"] for c in first["conversions"]] == made[:50]  # oldest first
        link = first["@nextLink"]
        assert "api-version=2021-01-01" in link and "skiptoken=" in link  # the SDK adds nothing to the link
        second = api.get(link).json()
        assert [c["id"] for c in second["conversions"]] == made[50:] and second["@nextLink"] is None

        v1_first = api.get(f"/v1/accounts/{aid}/conversions").json()
        assert [c["conversionId"] for c in v1_first["conversions"]] == made[:50]
        assert {c["status"] for c in v1_first["conversions"]} == {"Created"}
        v1_second = api.get(v1_first["@nextLink"]).json()
        assert [c["conversionId"] for c in v1_second["conversions"]] == made[50:] and v1_second["@nextLink"] is None

        assert_error(api.get(f"/accounts/{aid}/conversions", params={**V21, "skiptoken": "bogus"}), 400, "BadRequest")

    # Another account sees none of them, under the same ids.
    with svc.api() as mine:
        assert_error(mine.get(_url(svc, "page-000")), 400, "BadRequest")  # no api-version
        assert_error(mine.get(_url(svc, "page-000"), params=V21), 404, "NotFound")
        ids = {c["id"] for c in mine.get(f"/accounts/{svc.account_id}/conversions", params=V21).json()["conversions"]}
        assert not ids & set(made)
        assert_error(mine.get(f"/accounts/{aid}/conversions", params=V21), 403, "Forbidden")


# --- cancel (openrr's extension) ------------------------------------------------------------------


def test_cancel_is_explicit_and_final(svc: Service, api: httpx.Client) -> None:
    cid = _cid("cancel")
    assert api.put(_url(svc, cid), params=V21, json=body()).status_code == 201
    r = api.post(_url(svc, cid) + "/:cancel", params=V21)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == "Cancelled" and doc["error"]["code"] == "ConversionCancelled"
    assert "output" not in doc
    again = api.post(_url(svc, cid) + "/:CANCEL", params=V21)
    assert again.status_code == 200 and again.json() == doc
    assert api.get(_url(svc, cid), params=V21).json() == doc
    # The same create again finds the cancelled conversion; it does not start a new one.
    assert api.put(_url(svc, cid), params=V21, json=body()).json()["status"] == "Cancelled"
    v1 = api.get(f"/v1/accounts/{svc.account_id}/conversions/{cid}").json()
    assert v1["status"] == "Aborted" and v1["convertedAsset"] is None


# --- linked storage -------------------------------------------------------------------------------


def test_linked_storage_is_used_without_sas_and_its_key_never_leaks(svc: Service) -> None:
    account = create_account(svc.data_dir)
    aid = account["accountId"]
    no_sas = body(
        **{"inputLocation.storageContainerReadListSas": None, "outputLocation.storageContainerWriteSas": None}
    )
    with svc.api(aid, account["primaryKey"]) as api:
        err = assert_error(
            api.put(_url(svc, "unlinked", aid), params=V21, json=no_sas), 403, "DelegatedResourceAccessError"
        )
        assert err["message"].startswith(LINK_MESSAGE)
        assert "https://contosostorage01.blob.core.windows.net" in err["message"]
        assert err["target"] == "settings.inputLocation.storageContainerUri"
        assert_error(api.get(_url(svc, "unlinked", aid), params=V21), 404, "NotFound")  # nothing was created

        out = openrr(
            "account", "link-storage", aid, "--account-name", "contosostorage01", "--account-key", STORAGE_KEY,
            data_dir=svc.data_dir,
        )  # fmt: skip
        assert STORAGE_KEY not in out.stdout
        r = api.put(_url(svc, "linked", aid), params=V21, json=no_sas)
        assert r.status_code == 201, r.text
        assert STORAGE_KEY not in r.text
        # A SAS for one side, linked storage for the other.
        mixed = body(**{"outputLocation.storageContainerWriteSas": None})
        assert api.put(_url(svc, "mixed", aid), params=V21, json=mixed).status_code == 201

        # Only a different access mode: a conflict, not the same conversion.
        assert_error(api.put(_url(svc, "linked", aid), params=V21, json=body()), 409, "Conflict")

        # v1's `create` is linked storage by definition.
        v1_body = {
            "input": {
                "storageAccountName": "contosostorage01",
                "blobContainerName": "arrinput",
                "inputAssetPath": "a.glb",
            },
            "output": {"storageAccountName": "contosostorage01", "blobContainerName": "arroutput"},
        }
        created = api.post(f"/v1/accounts/{aid}/conversions/create", json=v1_body)
        assert created.status_code == 202, created.text
        v1_id = created.json()["conversionId"]
        assert api.get(_url(svc, v1_id, aid), params=V21).json()["settings"]["inputLocation"] == {
            "storageContainerUri": IN_URI,
            "relativeInputAssetPath": "a.glb",
        }

        listed = openrr("account", "storage-links", aid, "--json", data_dir=svc.data_dir).stdout
        assert json.loads(listed)[0]["blobEndpoint"] == "https://contosostorage01.blob.core.windows.net"
        assert STORAGE_KEY not in listed
        # Encrypted at rest: the database file holds no trace of the key.
        assert STORAGE_KEY.encode() not in (svc.data_dir / "openrr.db").read_bytes()
        assert b"SECRETinput" not in (svc.data_dir / "openrr.db").read_bytes()

        openrr("account", "unlink-storage", aid, "contosostorage01", data_dir=svc.data_dir)
        assert_error(
            api.put(_url(svc, "after-unlink", aid), params=V21, json=no_sas), 403, "DelegatedResourceAccessError"
        )
        assert_error(
            api.post(f"/v1/accounts/{aid}/conversions/create", json=v1_body), 403, "DelegatedResourceAccessError"
        )
    missing = openrr("account", "link-storage", aid, "--account-name", "x", data_dir=svc.data_dir, check=False)
    assert missing.returncode == 1 and "--connection-string, or --account-name and --account-key" in missing.stderr
    nobody = openrr("account", "link-storage", str(uuid.uuid4()), "--connection-string", "AccountName=a;AccountKey=b",
                    data_dir=svc.data_dir, check=False)  # fmt: skip
    assert nobody.returncode == 1 and "no account" in nobody.stderr


# --- v1 -------------------------------------------------------------------------------------------

V1_SAS_BODY = {
    "input": {
        "storageAccountName": "contosostorage01",
        "blobContainerName": "arrinput",
        "folderPath": "models",
        "inputAssetPath": "house.glb",
        "containerReadListSas": "sv=1&sig=SECRETv1in",
    },
    "output": {
        "storageAccountName": "contosostorage01",
        "blobContainerName": "arroutput",
        "folderPath": "out",
        "outputAssetFileName": "converted.arrAsset",
        "containerWriteSas": "sv=1&sig=SECRETv1out",
    },
}


def test_v1_create_with_sas_maps_onto_the_same_jobs(svc: Service, api: httpx.Client) -> None:
    r = api.post(f"/v1/accounts/{svc.account_id}/conversions/createWithSharedAccessSignature/", json=V1_SAS_BODY)
    assert r.status_code == 202, r.text
    cid = r.json()["conversionId"]
    assert str(uuid.UUID(cid)) == cid and list(r.json()) == ["conversionId"]
    location = r.headers["location"]
    v1 = api.get(location)
    assert v1.status_code == 200 and "SECRET" not in v1.text
    assert v1.json() == {"conversionId": cid, "status": "Created", "error": None, "convertedAsset": None, "progress": 0}
    doc = api.get(_url(svc, cid), params=V21).json()
    assert doc["settings"] == {
        "inputLocation": {
            "storageContainerUri": IN_URI,
            "blobPrefix": "models/",
            "relativeInputAssetPath": "house.glb",
        },
        "outputLocation": {
            "storageContainerUri": OUT_URI,
            "blobPrefix": "out/",
            "outputAssetFilename": "converted.arrAsset",
        },
    }
    # Keys in any case, and the v1 draft's misspelling of the file name's key.
    odd = copy.deepcopy(V1_SAS_BODY)
    odd["input"] = {k.upper(): v for k, v in odd["input"].items()}
    odd["output"]["outputAsssetFileName"] = odd["output"].pop("outputAssetFileName")
    r = api.post(f"/v1/accounts/{svc.account_id}/conversions/createwithsharedaccesssignature", json=odd)
    assert r.status_code == 202, r.text
    settings = api.get(_url(svc, r.json()["conversionId"]), params=V21).json()["settings"]
    assert settings["outputLocation"]["outputAssetFilename"] == "converted.arrAsset"


def _v1_error(r: httpx.Response, detail: str) -> None:
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error": f"Unable to start conversion: Invalid request - the following errors occurred:\n\t{detail}"
    }


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (("input", "inputAssetPath", None), "The 'input.inputAssetPath' field is required."),
        (("input", "containerReadListSas", None), "The 'input.containerReadListSas' field is required."),
        (("output", "containerWriteSas", ""), "The 'output.containerWriteSas' field is required."),
        (("input", "storageAccountName", 7), "Invalid value for 'input.storageAccountName': expected a string, got 7."),
        (
            ("output", "outputAssetFileName", "house.fbx"),
            "The outputAssetFileName 'house.fbx' must end in '.arrAsset'.",
        ),
        (
            ("input", "folderPath", "../secrets"),
            "The folderPath '../secrets' is not a relative path: no leading '/', '.', '..' or empty folders.",
        ),
        (
            ("input", "storageAccountName", "bad/name"),
            "The input storageAccountName 'bad/name' is not a storage account name (3 to 24 lower-case letters and "
            "digits) and no storage account of that name is linked to this account.",
        ),
        (
            ("output", "blobContainerName", "Out_Put"),
            "The output blobContainerName 'Out_Put' is not a container name (3 to 63 lower-case letters, digits and "
            "single hyphens, starting and ending with a letter or digit).",
        ),
    ],
    ids=["no path", "no read sas", "empty write sas", "number", "extension", "dotdot", "account name", "container"],
)
def test_v1_create_refusals_are_v1_strings(
    svc: Service, api: httpx.Client, change: tuple[str, str, Any], detail: str
) -> None:
    doc = copy.deepcopy(V1_SAS_BODY)
    side, key, value = change
    if value is None:
        doc[side].pop(key)
    else:
        doc[side][key] = value
    before = len(api.get(f"/v1/accounts/{svc.account_id}/conversions").json()["conversions"])
    _v1_error(api.post(f"/v1/accounts/{svc.account_id}/conversions/createWithSharedAccessSignature", json=doc), detail)
    assert len(api.get(f"/v1/accounts/{svc.account_id}/conversions").json()["conversions"]) == before


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]"])
def test_v1_unparseable_body_gets_a_problem_object(svc: Service, api: httpx.Client, raw: bytes) -> None:
    r = api.post(
        f"/v1/accounts/{svc.account_id}/conversions/createWithSharedAccessSignature",
        content=raw,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400, r.text
    doc = r.json()
    assert doc["status"] == 400 and doc["title"] == "One or more validation errors occurred."
    assert set(doc) == {"errors", "type", "title", "status", "traceId"} and doc["errors"]["$"][0]


# --- bad input ------------------------------------------------------------------------------------

BAD_BODIES: list[tuple[bytes, str, str | None]] = [
    (b"{bad", "The request body is not valid JSON: Expecting property name", None),
    (b"", "The request body is empty; a JSON object is required.", None),
    (b"[]", "The request body must be a JSON object, not an array.", None),
    (json.dumps({}).encode(), "The 'settings' field is required.", "settings"),
    (
        json.dumps({"settings": "house.fbx"}).encode(),
        "Invalid value for 'settings': expected an object, got the string 'house.fbx'.",
        "settings",
    ),
    (
        json.dumps({"settings": {"inputLocation": [], "outputLocation": {}}}).encode(),
        "Invalid value for 'settings.inputLocation': expected an object, got an array.",
        "settings.inputLocation",
    ),
    (
        json.dumps({"Settings": body()["settings"]}).encode(),  # JSON keys are case-sensitive, as for the SDK
        "The 'settings' field is required.",
        "settings",
    ),
]


def _fields(**changes: Any) -> bytes:
    return json.dumps(body(**changes)).encode()


BAD_FIELDS: list[tuple[bytes, str, str]] = [
    (
        _fields(**{"inputLocation.storageContainerUri": None}),
        "The 'settings.inputLocation.storageContainerUri' field is required.",
        "settings.inputLocation.storageContainerUri",
    ),
    (
        _fields(**{"outputLocation.storageContainerUri": 5}),
        "Invalid value for 'settings.outputLocation.storageContainerUri': expected a string, got 5.",
        "settings.outputLocation.storageContainerUri",
    ),
    (
        _fields(**{"inputLocation.relativeInputAssetPath": None}),
        "The 'settings.inputLocation.relativeInputAssetPath' field is required.",
        "settings.inputLocation.relativeInputAssetPath",
    ),
    (
        _fields(**{"inputLocation.storageContainerReadListSas": ["sig"]}),
        "Invalid value for 'settings.inputLocation.storageContainerReadListSas': expected a string, got an array.",
        "settings.inputLocation.storageContainerReadListSas",
    ),
    (
        _fields(**{"inputLocation.blobPrefix": True}),
        "Invalid value for 'settings.inputLocation.blobPrefix': expected a string, got the boolean true.",
        "settings.inputLocation.blobPrefix",
    ),
    (
        _fields(**{"inputLocation.storageContainerUri": IN_URI + "?sv=1&sig=x"}),
        f"The storageContainerUri '{IN_URI}?sv=1&sig=x' is invalid: it must not carry a query string: "
        "give the SAS token in its own field.",
        "settings.inputLocation.storageContainerUri",
    ),
    (
        _fields(**{"inputLocation.storageContainerUri": "ftp://host/container"}),
        "The storageContainerUri 'ftp://host/container' is invalid: the scheme 'ftp' is not supported: "
        "use https://, http:// or file://.",
        "settings.inputLocation.storageContainerUri",
    ),
    (
        _fields(**{"outputLocation.storageContainerUri": "https://acct.blob.core.windows.net"}),
        "The storageContainerUri 'https://acct.blob.core.windows.net' is invalid: it names no container: "
        "expected https://<account>.blob.core.windows.net/<container>.",
        "settings.outputLocation.storageContainerUri",
    ),
    (
        _fields(**{"inputLocation.storageContainerUri": "not a uri"}),
        "The storageContainerUri 'not a uri' is invalid: the scheme '' is not supported: use https://, http:// or "
        "file://.",
        "settings.inputLocation.storageContainerUri",
    ),
    (
        _fields(**{"inputLocation.storageContainerUri": "https://acct.blob.core.windows.net/" + "c" * 2100}),
        "The storageContainerUri is 2135 characters long; at most 2048.",
        "settings.inputLocation.storageContainerUri",
    ),
    (
        _fields(**{"inputLocation.blobPrefix": "../other"}),
        "The blobPrefix '../other' is not a relative path: no leading '/', '.', '..' or empty folders.",
        "settings.inputLocation.blobPrefix",
    ),
    (
        _fields(**{"inputLocation.relativeInputAssetPath": "/etc/passwd"}),
        "The relativeInputAssetPath '/etc/passwd' is not a relative path: no leading '/', '.', '..' or empty folders.",
        "settings.inputLocation.relativeInputAssetPath",
    ),
    (
        _fields(**{"inputLocation.relativeInputAssetPath": "models\\house.fbx"}),
        "The relativeInputAssetPath 'models\\house.fbx' contains '\\'; separate folders with '/'.",
        "settings.inputLocation.relativeInputAssetPath",
    ),
    (
        _fields(**{"inputLocation.relativeInputAssetPath": "models/"}),
        "The relativeInputAssetPath 'models/' names a folder; it must name the model file.",
        "settings.inputLocation.relativeInputAssetPath",
    ),
    (
        _fields(**{"inputLocation.relativeInputAssetPath": "m/" * 600 + "a.glb"}),
        "The relativeInputAssetPath is 1205 characters long; at most 1024.",
        "settings.inputLocation.relativeInputAssetPath",
    ),
    (
        _fields(**{"outputLocation.outputAssetFilename": "house.glb"}),
        "The outputAssetFilename 'house.glb' must end in '.arrAsset'.",
        "settings.outputLocation.outputAssetFilename",
    ),
    (
        _fields(**{"outputLocation.outputAssetFilename": "sub/house.arrAsset"}),
        "The outputAssetFilename 'sub/house.arrAsset' must be a file name (folders go in blobPrefix).",
        "settings.outputLocation.outputAssetFilename",
    ),
    (
        _fields(**{"outputLocation.storageContainerWriteSas": "?" + "s" * 5000}),
        "The SAS token is 5001 characters long; at most 4096.",
        "settings.outputLocation.storageContainerWriteSas",
    ),
    (
        _fields(**{"inputLocation.storageContainerUri": "file:///etc"}),
        "The directory /etc is not in this account's local storage; file:// containers of this account must lie in",
        "settings.inputLocation.storageContainerUri",
    ),
    (
        _fields(**{"inputLocation.storageContainerUri": "file://otherhost/srv"}),
        "The storageContainerUri 'file://otherhost/srv' is invalid: a file:// URI names a directory on this machine, "
        "not on 'otherhost'.",
        "settings.inputLocation.storageContainerUri",
    ),
]


@pytest.mark.parametrize(
    ("raw", "message", "target"),
    BAD_BODIES + BAD_FIELDS,
    ids=[f"{target or 'body'}: {message[:40]}" for _, message, target in BAD_BODIES + BAD_FIELDS],
)
def test_bad_create_bodies_are_refused_precisely_and_create_nothing(
    svc: Service, api: httpx.Client, raw: bytes, message: str, target: str | None
) -> None:
    cid = _cid("bad")
    r = api.put(_url(svc, cid), params=V21, content=raw, headers={"content-type": "application/json"})
    err = assert_error(r, 400, "BadRequest")
    assert err["message"].startswith(message), err["message"]
    assert err.get("target") == target, err
    assert "SECRET" not in r.text
    assert_error(api.get(_url(svc, cid), params=V21), 404, "NotFound")


def test_oversized_body_is_413(svc: Service, api: httpx.Client) -> None:
    doc = body(**{"inputLocation.padding": "x" * (64 * 1024)})
    assert_error(api.put(_url(svc, _cid()), params=V21, json=doc), 413, "PayloadTooLarge")


@pytest.mark.parametrize(
    ("cid", "shown"),
    [("has space", "has space"), ("dots.not.allowed", "dots.not.allowed"), ("x" * 257, "x" * 61 + "...")],
    ids=["space", "dots", "257 characters"],
)
def test_illegal_conversion_ids(svc: Service, api: httpx.Client, cid: str, shown: str) -> None:
    for r in (
        api.put(_url(svc, cid), params=V21, json=body()),
        api.get(_url(svc, cid), params=V21),
        api.get(f"/v1/accounts/{svc.account_id}/conversions/{cid}"),
    ):
        err = assert_error(r, 400, "BadRequest")
        assert err["message"].startswith(f"The conversion ID '{shown}' is invalid"), err
        assert err["target"] == "conversionId"
    ok = "A" * 256
    assert api.put(_url(svc, ok), params=V21, json=body()).status_code in (200, 201)


def test_api_version_and_auth_are_checked(svc: Service, api: httpx.Client) -> None:
    url = _url(svc, _cid())
    assert_error(api.put(url, json=body()), 400, "BadRequest")
    assert_error(api.put(url, params={"api-version": "2020-01-01"}, json=body()), 400, "BadRequest")
    with svc.http() as anonymous:
        r = anonymous.put(url, params=V21, json=body())
        assert r.status_code == 401 and r.content == b""  # ARR's bare 401 (issue 9, finding 16)
        assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert_error(api.put(f"/accounts/{uuid.uuid4()}/conversions/x", params=V21, json=body()), 403, "Forbidden")
    assert_error(api.put("/accounts/not-a-guid/conversions/x", params=V21, json=body()), 400, "BadRequest")
    assert_error(api.get(url, params=V21), 404, "NotFound")  # none of these created it
