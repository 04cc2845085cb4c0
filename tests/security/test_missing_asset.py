"""The missing-asset error (issue 9, from the official SDK's own tests): a conversion whose input asset is not in the
container ends with ARR's code `InputContainerError` and ARR's sentence, which the released SDK's
`test_failed_conversion_missing_asset` (sync and async) look for.

Before the fix both forms failed: openrr ended such a job with `ConversionProcessFailed` and "Invalid input provided.".
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.mixedreality.remoterendering import AssetConversionInputSettings, AssetConversionOutputSettings
from azure.mixedreality.remoterendering.aio import RemoteRenderingClient as AsyncRemoteRenderingClient

from tests.azurite import Azurite
from tests.conversions import blobs, container_sas, container_uri, new_container, result_entries, upload
from tests.harness import Service

ARR_SENTENCE = (
    "Could not find the asset file in the storage account. Please make sure all paths and names are correct and "
    "the file is uploaded to storage."
)


def _settings(blob: Azurite, cid: str) -> tuple[AssetConversionInputSettings, AssetConversionOutputSettings, str]:
    """The SDK test's request: a blob prefix 'Input' that holds another model, and a name that is not there."""
    container = new_container(blob, "missing")
    upload(blob, container, {"Input/testBox.glb": b"glTF"})
    sas = container_sas(container, "rwl")
    return (
        AssetConversionInputSettings(
            storage_container_uri=container_uri(blob, container),
            relative_input_asset_path="testBoxWhichDoesNotExist.fbx",
            blob_prefix="Input",
            storage_container_read_list_sas=sas,
        ),
        AssetConversionOutputSettings(
            storage_container_uri=container_uri(blob, container), blob_prefix=cid, storage_container_write_sas=sas
        ),
        container,
    )


def _check(error: HttpResponseError, blob: Azurite, container: str, cid: str) -> None:
    # What the SDK's test asserts ...
    assert error.error is not None and error.error.code == "InputContainerError"
    assert (
        error.error.message is not None
        and "Could not find the asset file in the storage account" in error.error.message
    )
    # ... ARR's whole sentence first, then openrr's detail; and the result file says the same.
    assert error.error.message.startswith(ARR_SENTENCE + " "), error.error.message
    assert "'testBoxWhichDoesNotExist.fbx' does not exist under the blob prefix 'Input/'" in error.error.message
    entries = result_entries(blobs(blob, container)[f"{cid}/testBoxWhichDoesNotExist.result.json"])
    assert [e["error"] for e in entries if "error" in e] == ["InputContainerError"]


def test_missing_asset_sync_sdk(service: Service, blob: Azurite) -> None:
    """The sync form of the SDK's test_failed_conversion_missing_asset."""
    cid = f"missing-sync-{uuid.uuid4().hex[:6]}"
    input_settings, output_settings, container = _settings(blob, cid)
    with pytest.raises(HttpResponseError) as failed:
        poller = service.sdk().begin_asset_conversion(
            conversion_id=cid, input_settings=input_settings, output_settings=output_settings
        )
        poller.result(timeout=60)
    _check(failed.value, blob, container, cid)


def test_missing_asset_async_sdk(service: Service, blob: Azurite) -> None:
    """The async form of the SDK's test_failed_conversion_missing_asset."""
    cid = f"missing-async-{uuid.uuid4().hex[:6]}"
    input_settings, output_settings, container = _settings(blob, cid)

    async def convert() -> None:
        # An STS token handed over as an AccessToken: the async client's own STS pipeline (aiohttp) has no way to
        # be told to trust the service's certificate; the conversion's requests and polls are the SDK's own.
        client = AsyncRemoteRenderingClient(
            endpoint=service.endpoint,
            account_id=service.account_id,
            account_domain="localhost",
            credential=AccessToken(service.token(), int(time.time()) + 3600),
            polling_interval=0.2,
            connection_verify=service.cert,
        )
        async with client:
            poller = await client.begin_asset_conversion(
                conversion_id=cid, input_settings=input_settings, output_settings=output_settings
            )
            await asyncio.wait_for(poller.result(), 60)

    with pytest.raises(HttpResponseError) as failed:
        asyncio.run(convert())
    _check(failed.value, blob, container, cid)


def test_missing_local_asset_too(service: Service, tmp_path: Path) -> None:
    """The same answer for a file:// container, whose input the control plane copies for the worker."""
    area = service.data_dir / "containers" / service.account_id / f"missing-{uuid.uuid4().hex[:6]}"
    (area / "Input").mkdir(parents=True)
    (area / "Input" / "testBox.glb").write_bytes(b"glTF")
    cid = f"missing-local-{uuid.uuid4().hex[:6]}"
    with pytest.raises(HttpResponseError) as failed:
        poller = service.sdk().begin_asset_conversion(
            conversion_id=cid,
            input_settings=AssetConversionInputSettings(
                storage_container_uri=area.as_uri(),
                relative_input_asset_path="testBoxWhichDoesNotExist.fbx",
                blob_prefix="Input",
            ),
            output_settings=AssetConversionOutputSettings(storage_container_uri=area.as_uri(), blob_prefix=cid),
        )
        poller.result(timeout=60)
    assert failed.value.error is not None and failed.value.error.code == "InputContainerError"
    assert failed.value.error.message.startswith(ARR_SENTENCE + " "), failed.value.error.message
    assert "1 blob is there: testBox.glb." in failed.value.error.message
    result = area / cid / "testBoxWhichDoesNotExist.result.json"
    assert result.is_file() and result.stat().st_uid == os.geteuid()
