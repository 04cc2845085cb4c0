"""Blob storage as `openrr convert` uses it: uploading a model with a progress display, and the SAS tokens
Conversion.ps1 made (`New-AzStorageContainerSASToken`, `New-AzStorageBlobSASToken`), signed with the storage key.
Containers are reached through the one blob adapter, storage/blob.py (unguarded: the operator's own tool)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from azure.storage.blob import BlobSasPermissions, ContainerSasPermissions, generate_blob_sas, generate_container_sas

from openrr.client.convert_settings import StorageAccount, StorageFailure
from openrr.protocol.storage_uri import parse_container_uri
from openrr.storage.blob import BlobContainer
from openrr.storage.container import ContainerAccess
from openrr.storage.errors import StorageError

# Conversion.ps1's tokens lived 24 h: long enough for a large conversion queued behind others.
SAS_LIFETIME = dt.timedelta(hours=24)


class UploadDisplay(Protocol):
    """Where upload_files reports its progress (the convert command's is cli/toolkit.py's UploadProgress)."""

    def start(self, files: int, total: int) -> None: ...

    def update(self, index: int, name: str, done: int) -> None: ...

    def file_done(self, index: int, name: str, size: int, done: int) -> None: ...

    def finish(self) -> None: ...


@dataclass(frozen=True)
class Uploaded:
    container_uri: str
    blobs: list[str]
    bytes: int


def _expiry() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0) + SAS_LIFETIME


def container_sas(storage: StorageAccount, container: str, permission: ContainerSasPermissions) -> str:
    """A container SAS with a leading `?`, as the conversion API takes it."""
    assert storage.key is not None
    token = generate_container_sas(
        storage.name, container, account_key=storage.key, permission=permission, expiry=_expiry()
    )
    return "?" + token


def input_sas(storage: StorageAccount, container: str) -> str:
    # Read + list is all a conversion needs of its input (ARR's storageContainerReadListSas); the script gave rwdl.
    return container_sas(storage, container, ContainerSasPermissions(read=True, list=True))


def output_sas(storage: StorageAccount, container: str) -> str:
    return container_sas(storage, container, ContainerSasPermissions(write=True))


def asset_sas_url(storage: StorageAccount, conversion: dict[str, object]) -> str | None:
    """A read-only SAS URL of a succeeded conversion's output asset, when `storage` holds the key of its account."""
    output = conversion.get("output")
    settings = conversion.get("settings")
    if storage.key is None or not isinstance(output, dict) or not isinstance(settings, dict):
        return None
    location = settings.get("outputLocation")
    asset_uri = output.get("outputAssetUri")
    if not isinstance(location, dict) or not isinstance(asset_uri, str):
        return None
    try:
        container = parse_container_uri(str(location.get("storageContainerUri", "")))
    except ValueError:
        return None
    if container.is_local or container.storage_account != storage.name:
        return None  # a file:// container, or another storage account's: this key cannot sign for it
    prefix = container.uri + "/"
    if not asset_uri.startswith(prefix):
        return None
    sas = generate_blob_sas(
        storage.name,
        container.container,
        asset_uri[len(prefix) :],
        account_key=storage.key,
        permission=BlobSasPermissions(read=True),
        expiry=_expiry(),
    )
    return f"{asset_uri}?{sas}"


def _container(storage: StorageAccount, container: str) -> BlobContainer:
    assert storage.key is not None
    uri = parse_container_uri(storage.container_uri(container))
    return BlobContainer(uri, ContainerAccess(uri.uri, storage_account=storage.name, account_key=storage.key), False)


def ensure_container(storage: StorageAccount, container: str) -> bool:
    """Create the container if it is missing (Set-AzStorageBlobContent wanted it made beforehand); True if made."""
    blobs = _container(storage, container)
    try:
        return blobs.create()
    except StorageError as e:
        raise _failure(e) from None
    finally:
        blobs.close()


def upload_files(
    storage: StorageAccount, container: str, files: list[tuple[Path, str]], display: UploadDisplay
) -> Uploaded:
    total = sum(path.stat().st_size for path, _ in files)
    display.start(len(files), total)
    done = 0
    blobs = _container(storage, container)
    try:
        for index, (path, name) in enumerate(files, 1):
            size = path.stat().st_size
            base = done

            def sent(current: int, index: int = index, base: int = base, name: str = name) -> None:
                display.update(index, name, base + current)

            try:
                blobs.upload(name, path, sent)
            except StorageError as e:
                display.finish()
                raise _failure(e) from None
            except OSError as e:
                display.finish()
                raise StorageFailure(f"reading {path} failed: {e.strerror or e}") from None
            done += size
            display.file_done(index, name, size, done)
    finally:
        blobs.close()
    display.finish()
    return Uploaded(storage.container_uri(container), [name for _, name in files], total)


def _failure(e: StorageError) -> StorageFailure:
    """The adapter's message (already free of credentials), with what to check when the service refused."""
    hint = " (check the storage key)" if e.reason == "denied" else ""
    return StorageFailure(e.message + hint)
