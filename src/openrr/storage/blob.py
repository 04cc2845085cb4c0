"""Azure Blob containers through azure-storage-blob, with a container SAS or a storage account's shared key: the one
blob adapter, for conversion workers (SAS or linked storage) and for `openrr convert`'s uploads alike."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import ContainerClient, ContentSettings, LinearRetry

from openrr.protocol.redaction import display_url, redact
from openrr.protocol.storage_uri import ContainerUri
from openrr.storage.container import BlobEntry, ContainerAccess
from openrr.storage.errors import StorageError
from openrr.storage.guard import FetchPolicy, FetchRefused
from openrr.storage.guard_azure import guarded_transport

# The library's default retry waits 15 s and more between tries; an unreachable container should fail in seconds.
_RETRY = LinearRetry(backoff=1, retry_total=2, random_jitter_range=0)
_CONTENT_TYPES = {".json": "application/json", ".arrAsset": "application/octet-stream"}


class BlobContainer:
    def __init__(self, uri: ContainerUri, access: ContainerAccess, guarded: bool = True) -> None:
        """`guarded`: every connection goes through the outbound-address guard (the URI is a tenant's choice).
        False only for the operator's own tools (`openrr convert`), which reach the storage the operator names,
        Azurite on loopback included."""
        self.uri = uri
        credential: Any = None
        if access.sas:
            credential = access.sas.lstrip("?")
        elif access.account_key:
            credential = {
                "account_name": access.storage_account or uri.storage_account,
                "account_key": access.account_key,
            }
        options: dict[str, Any] = {"connection_timeout": 10}
        if guarded:
            # Every connection (and redirect hop) goes through the address guard: the URI is the tenant's choice.
            policy = FetchPolicy.parse(access.fetch_allow)
            options = {"transport": guarded_transport(policy, connection_timeout=10, read_timeout=60)}
        self._client = ContainerClient(
            account_url=uri.endpoint,
            container_name=uri.container,
            credential=credential,
            retry_policy=_RETRY,
            **options,
        )

    @property
    def display(self) -> str:
        return display_url(self.uri.uri)

    def list(self, prefix: str) -> Iterator[BlobEntry]:
        try:
            for blob in self._client.list_blobs(name_starts_with=prefix or None):
                yield BlobEntry(blob.name, int(blob.size or 0))
        except FetchRefused as e:
            raise StorageError("refused", f"listing the blobs of {self.display} was refused: {e}") from None
        except AzureError as e:
            raise storage_error(e, f"listing the blobs of {self.display}") from None

    def download(self, name: str, dest: Path) -> None:
        try:
            with open(dest, "wb") as f:
                self._client.download_blob(name, max_concurrency=4).readinto(f)
        except FetchRefused as e:
            raise StorageError("refused", f"reading '{name}' from {self.display} was refused: {e}") from None
        except AzureError as e:
            raise storage_error(e, f"reading '{name}' from {self.display}") from None

    def upload(self, name: str, src: Path, progress: Callable[[int], None] | None = None) -> None:
        """`progress(bytes sent)` as the upload goes. An OSError reading `src` is the caller's to report."""
        settings = ContentSettings(content_type=_CONTENT_TYPES.get(src.suffix, "application/octet-stream"))
        hook = None if progress is None else (lambda current, _total: progress(current))
        try:
            with open(src, "rb") as f:
                self._client.upload_blob(
                    name,
                    f,
                    length=src.stat().st_size,
                    overwrite=True,
                    content_settings=settings,
                    max_concurrency=4,
                    progress_hook=hook,
                )
        except FetchRefused as e:
            raise StorageError("refused", f"writing '{name}' to {self.display} was refused: {e}") from None
        except AzureError as e:
            raise storage_error(e, f"writing '{name}' to {self.display}") from None

    def create(self) -> bool:
        """Create the container if it is missing; True if it was made."""
        try:
            self._client.create_container()
        except ResourceExistsError:
            return False
        except FetchRefused as e:
            raise StorageError("refused", f"creating the container {self.display} was refused: {e}") from None
        except AzureError as e:
            raise storage_error(e, f"creating the container {self.display}") from None
        return True

    def close(self) -> None:
        self._client.close()


def storage_error(e: AzureError, action: str) -> StorageError:
    if isinstance(e, ServiceRequestError | ServiceResponseError):
        return StorageError(
            "unreachable", redact(f"{action} failed: the blob service could not be reached ({e.message}).")
        )
    if isinstance(e, HttpResponseError):
        raw = getattr(e, "error_code", None)
        code = str(getattr(raw, "value", raw) or "")  # an enum member when the library knows the code
        status = e.status_code
        why = f"{status} {code}".strip() + f": {_summary(e)}"
        if isinstance(e, ClientAuthenticationError) or status in (401, 403):
            return StorageError("denied", redact(f"{action} was refused ({why})."))
        if isinstance(e, ResourceNotFoundError) or status == 404:
            what = "the container does not exist" if code == "ContainerNotFound" else "it does not exist"
            return StorageError("not_found", redact(f"{action} failed: {what} ({why})."))
        return StorageError("failed", redact(f"{action} failed ({why})."))
    return StorageError("failed", redact(f"{action} failed: {type(e).__name__}: {e}"))


def _summary(e: HttpResponseError) -> str:
    """The service's first sentence plus its authentication detail: the rest (request ids, times) is noise."""
    lines = [ln.strip() for ln in str(e.message or e.reason or "").splitlines() if ln.strip()]
    keep = lines[:1] + [ln for ln in lines if ln.lower().startswith("authenticationerrordetail")]
    return " ".join(keep)[:400] or (e.reason or "no detail")
