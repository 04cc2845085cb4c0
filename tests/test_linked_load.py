"""Sessions load blobs of their account's linked storage by plain URL (no SAS token), against a real Azurite.

The control plane hands each render server read-only tokens for the linked storage accounts of its session's
account (src/openrr/storage/session_access.py); a blob URL of a storage account that is not linked fails with
ModelLoadFailed naming the account.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from cryptography.fernet import Fernet

from openrr.accounts.service import AccountService
from openrr.accounts.storage_links import StorageLinks
from openrr.client.render_session import RenderSessionClient, SessionError
from openrr.storage.session_access import BlobGrant, SessionStorage, StorageGrants, storage_account_of
from openrr.store.db import Database
from openrr.store.secretbox import SecretBox
from tests.azurite import ACCOUNT, KEY, Azurite, azurite_available
from tests.conversions import API, blobs, container_uri, new_container, upload, wait_conversion
from tests.harness import Service, create_account, openrr, wait_status
from tests.models import write_models

pytestmark = pytest.mark.skipif(
    azurite_available() is not None and not os.environ.get("CI"), reason=str(azurite_available())
)
BACKGROUND = np.array([31, 31, 36])


@contextmanager
def ready_session_of(svc: Service, account_id: str, key: str) -> Iterator[dict[str, Any]]:
    sid = f"linked-{uuid.uuid4().hex[:10]}"
    with svc.api(account_id, key) as api:
        r = api.put(
            f"/accounts/{account_id}/sessions/{sid}", params=API, json={"maxLeaseTimeMinutes": 10, "size": "Standard"}
        )
        assert r.status_code == 201, r.text
        try:
            yield wait_status(api, account_id, sid, "Ready")
        finally:
            api.post(f"/accounts/{account_id}/sessions/{sid}/:stop", params=API)


def _render_logs(svc: Service) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((svc.data_dir / "logs").glob("render-*.log")))


def test_linked_storage_loads_plain_blob_urls(service: Service, blob: Azurite, tmp_path: Path) -> None:
    linked, unlinked = create_account(service.data_dir), create_account(service.data_dir)
    aid, key = linked["accountId"], linked["primaryKey"]
    openrr("account", "link-storage", aid, "--connection-string", blob.connection_string, data_dir=service.data_dir)

    models = write_models(tmp_path / "models")
    source, target = new_container(blob, "lin"), new_container(blob, "lout")
    upload(blob, source, {"scenes/sphere.glb": models["sphere"]})
    glb_url = f"{container_uri(blob, source)}/scenes/sphere.glb"
    # Azurite refuses anonymous reads: a load that works below really used the account's linked storage.
    assert httpx.get(glb_url).status_code == 403

    # ARR's whole flow without a SAS anywhere: convert with linked storage, load the output asset by its URI.
    cid = f"linked-load-{uuid.uuid4().hex[:8]}"
    with service.api(aid, key) as api:
        r = api.put(
            f"/accounts/{aid}/conversions/{cid}",
            params=API,
            json={
                "settings": {
                    "inputLocation": {
                        "storageContainerUri": container_uri(blob, source),
                        "blobPrefix": "scenes",
                        "relativeInputAssetPath": "sphere.glb",
                    },
                    "outputLocation": {"storageContainerUri": container_uri(blob, target)},
                }
            },
        )
        assert r.status_code == 201, r.text
        asset_url = wait_conversion(api, aid, cid, "Succeeded")["output"]["outputAssetUri"]
    assert asset_url == f"{container_uri(blob, target)}/sphere.arrAsset"

    async def linked_scenario(doc: dict[str, Any]) -> None:
        async with await RenderSessionClient.connect(
            doc["hostname"], doc["handshakePort"], service.token(aid, key), ca=service.cert
        ) as client:
            loaded = await client.load_model(glb_url)
            assert loaded["triangles"] == 5120 and loaded["name"] == "sphere.glb"
            assert loaded["source"] == glb_url  # the token the server added is never shown
            asset = await client.load_model(asset_url)
            assert asset["triangles"] == 5120 and asset["name"] == "sphere.arrAsset"
            await client.set_override(loaded["entityId"], hidden=True)
            cmd = await client.set_camera(position=(0, 0, 5), target=(0, 0, 0))
            frame = await client.next_frame(after_command=cmd)
            h, w, _ = frame.image.shape
            centre = frame.image[h // 2 - 10 : h // 2 + 10, w // 2 - 10 : w // 2 + 10].astype(float).mean(axis=(0, 1))
            corner = frame.image[:20, :20].astype(float).mean(axis=(0, 1))
            assert np.abs(corner - BACKGROUND).max() < 12, "the corner should show the background"
            assert np.abs(centre - BACKGROUND).max() > 40, "the converted sphere should fill the middle"
            # Linked, but no such blob: the blob service's reason, not a claim that the account is unlinked.
            with pytest.raises(SessionError) as missing:
                await client.load_model(f"{container_uri(blob, source)}/scenes/nothing.glb")
            assert missing.value.code == "ModelLoadFailed"
            assert "404" in missing.value.message and "BlobNotFound" in missing.value.message
            assert "not linked" not in missing.value.message

    async def unlinked_scenario(doc: dict[str, Any]) -> None:
        async with await RenderSessionClient.connect(
            doc["hostname"], doc["handshakePort"], service.token(unlinked["accountId"], unlinked["primaryKey"]),
            ca=service.cert,
        ) as client:  # fmt: skip
            with pytest.raises(SessionError) as denied:
                await client.load_model(glb_url)
            assert denied.value.code == "ModelLoadFailed"
            message = denied.value.message
            assert f"storage account '{ACCOUNT}' is not linked" in message, message
            assert "openrr account link-storage" in message and "403" in message

    with ready_session_of(service, aid, key) as doc:
        asyncio.run(linked_scenario(doc))
    with ready_session_of(service, unlinked["accountId"], unlinked["primaryKey"]) as doc:
        asyncio.run(unlinked_scenario(doc))

    logs = _render_logs(service)
    assert f"linked storage accounts readable by this session: {ACCOUNT}" in logs
    assert "sig=" not in logs  # the tokens the server appended never reach its log


def test_grants_read_blobs_and_nothing_else(blob: Azurite, tmp_path: Path) -> None:
    """The tokens the control plane issues: read one blob, but neither list, write, nor reach another account."""
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    try:
        account = AccountService(db).create(domain="localhost").account.account_id
        links = StorageLinks(db, SecretBox(Fernet.generate_key()))
        assert StorageGrants(links)(account) == []
        links.link(account, ACCOUNT, KEY, blob.blob_endpoint)
        (grant,) = StorageGrants(links, lifetime=dt.timedelta(minutes=5))(account)
    finally:
        db.dispose()
    assert grant.blob_endpoint == blob.blob_endpoint and grant.storage_account == ACCOUNT
    assert "sp=r&" in grant.sas and "srt=o" in grant.sas and "ss=b" in grant.sas
    assert dt.timedelta(minutes=4) < grant.expires_on - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=5)

    container = new_container(blob, "grant")
    upload(blob, container, {"a/model.glb": b"glTF-bytes"})
    storage = SessionStorage()
    storage.replace([BlobGrant.from_json(grant.to_json())])  # as it travels over the control channel
    url = f"{container_uri(blob, container)}/a/model.glb"
    signed = storage.authorize(url)
    assert signed.startswith(url + "?") and httpx.get(signed).content == b"glTF-bytes"
    assert storage.authorize(url + "?own=sas") == url + "?own=sas"  # a URL's own SAS is left alone
    other = "https://elsewhere.blob.core.windows.net/c/m.glb"
    assert storage.authorize(other) == other
    assert storage_account_of(other) == "elsewhere" and storage_account_of(url) == ACCOUNT
    hint = storage.denied_hint(other)
    assert hint is not None and "'elsewhere' is not linked" in hint
    later = grant.expires_on + dt.timedelta(seconds=1)
    assert "expired" in (storage.denied_hint(url, now=later) or "")

    token = signed.split("?", 1)[1]
    listing = httpx.get(f"{container_uri(blob, container)}?restype=container&comp=list&{token}")
    write = httpx.put(f"{url}?{token}", headers={"x-ms-blob-type": "BlockBlob"}, content=b"overwritten")
    assert listing.status_code == 403 and write.status_code == 403
    assert blobs(blob, container) == {"a/model.glb": b"glTF-bytes"}
