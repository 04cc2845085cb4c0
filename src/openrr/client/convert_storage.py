"""Blob storage as `openrr convert` uses it: uploading a model with a progress display, and the SAS tokens
Conversion.ps1 made (`New-AzStorageContainerSASToken`, `New-AzStorageBlobSASToken`), signed with the storage key."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.blob import (
    BlobSasPermissions,
    ContainerClient,
    ContainerSasPermissions,
    LinearRetry,
    generate_blob_sas,
    generate_container_sas,
)

from openrr.client.convert_settings import StorageAccount, StorageFailure
from openrr.protocol.redaction import redact
from openrr.protocol.storage_uri import parse_container_uri

# Conversion.ps1's tokens lived 24 h: long enough for a large conversion queued behind others.
SAS_LIFETIME = dt.timedelta(hours=24)
# The library's default retry waits 15 s and more between tries: an unreachable storage should fail in seconds.
_RETRY = LinearRetry(backoff=1, retry_total=2, random_jitter_range=0)


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


def _client(storage: StorageAccount, container: str) -> ContainerClient:
    assert storage.key is not None
    return ContainerClient(
        account_url=storage.blob_endpoint,
        container_name=container,
        credential={"account_name": storage.name, "account_key": storage.key},
        retry_policy=_RETRY,
        connection_timeout=10,
    )


def ensure_container(storage: StorageAccount, container: str) -> bool:
    """Create the container if it is missing (Set-AzStorageBlobContent wanted it made beforehand); True if made."""
    with _client(storage, container) as client:
        try:
            client.create_container()
        except ResourceExistsError:
            return False
        except AzureError as e:
            raise _failure(e, f"creating the container {storage.container_uri(container)}") from None
    return True


def upload_files(
    storage: StorageAccount, container: str, files: list[tuple[Path, str]], display: UploadDisplay
) -> Uploaded:
    total = sum(path.stat().st_size for path, _ in files)
    display.start(len(files), total)
    done = 0
    with _client(storage, container) as client:
        for index, (path, name) in enumerate(files, 1):
            size = path.stat().st_size
            base = done

            def hook(current: int, _total: int | None, index: int = index, base: int = base, name: str = name) -> None:
                display.update(index, name, base + current)

            try:
                with open(path, "rb") as f:
                    client.upload_blob(name, f, length=size, overwrite=True, progress_hook=hook, max_concurrency=4)
            except AzureError as e:
                display.finish()
                raise _failure(e, f"uploading {path} as '{name}' to {storage.container_uri(container)}") from None
            except OSError as e:
                display.finish()
                raise StorageFailure(f"reading {path} failed: {e.strerror or e}") from None
            done += size
            display.file_done(index, name, size, done)
    display.finish()
    return Uploaded(storage.container_uri(container), [name for _, name in files], total)


def _failure(e: AzureError, action: str) -> StorageFailure:
    if isinstance(e, HttpResponseError):
        code = getattr(e, "error_code", None)
        code = str(getattr(code, "value", code) or "")
        first = next((ln.strip() for ln in str(e.message or e.reason or "").splitlines() if ln.strip()), "")
        why = f"{e.status_code} {code}".strip() + (f": {first}" if first else "")
        hint = " (check the storage key)" if e.status_code in (401, 403) else ""
        return StorageFailure(redact(f"{action} failed: {why}{hint}"))
    return StorageFailure(redact(f"{action} failed: {type(e).__name__}: {e.message or e}"))
