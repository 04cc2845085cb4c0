"""Linked storage for sessions: what lets a render server load `https://<account>.blob.../<container>/<blob>`
(no SAS token) when the session's openrr account has linked that storage account.

The control plane never hands a render server a storage key. For every storage account linked to the session's
account it issues a read-only account SAS (blob service, objects only: no listing, no writing, no other service)
that lives `GRANT_LIFETIME`, and pushes the set over the render server's control channel before the session is
Ready, then again every `GRANT_REFRESH_S` (so links and unlinks reach running sessions, and tokens never run out
while the control plane runs). The render server appends the matching token to a plain blob URL when it loads it.
See docs/conversions.md ("Sessions and linked storage").
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from openrr.protocol.storage_uri import normalise_endpoint
from openrr.storage.links import LinkCredentials

GRANT_LIFETIME = dt.timedelta(hours=1)
# Well inside the lifetime: a control plane that is down for most of an hour leaves running sessions working.
GRANT_REFRESH_S = 60.0


@dataclass(frozen=True)
class BlobGrant:
    """Read access to one linked storage account, as handed to a render server."""

    blob_endpoint: str
    """Normalised, as links are stored: `https://acct.blob.core.windows.net`, `http://127.0.0.1:10000/devstoreaccount1`."""
    storage_account: str
    sas: str
    """An account SAS without the leading `?`: sp=r, ss=b, srt=o."""
    expires_on: dt.datetime

    def to_json(self) -> dict[str, str]:
        return {
            "blobEndpoint": self.blob_endpoint,
            "storageAccount": self.storage_account,
            "sas": self.sas,
            "expiresOn": self.expires_on.isoformat(),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> BlobGrant:
        expires = dt.datetime.fromisoformat(str(doc["expiresOn"]))
        return cls(str(doc["blobEndpoint"]), str(doc["storageAccount"]), str(doc["sas"]).lstrip("?"), expires)

    def covers(self, url: str) -> bool:
        return _endpoint_prefix(url).startswith(self.blob_endpoint + "/")


class GrantSource(Protocol):
    """What the hosting backend asks for a session's grants (the control plane's StorageGrants)."""

    def __call__(self, account_id: str) -> list[BlobGrant]: ...


class _Linked(Protocol):
    @property
    def blob_endpoint(self) -> str: ...


class LinkRegistry(Protocol):
    """Where an account's links are kept (accounts/storage_links.py's StorageLinks)."""

    def list(self, account_id: str) -> Sequence[_Linked]: ...

    def credentials(self, account_id: str, blob_endpoint: str) -> LinkCredentials | None: ...


class StorageGrants:
    """Control-plane side: read-only SAS tokens for every storage account linked to an openrr account."""

    def __init__(self, links: LinkRegistry, lifetime: dt.timedelta = GRANT_LIFETIME) -> None:
        self.links = links
        self.lifetime = lifetime

    def __call__(self, account_id: str) -> list[BlobGrant]:
        linked = self.links.list(account_id)
        if not linked:
            # Without the import below: it takes ~0.5 s the first time, which a session's first start (pushed its
            # grants before Ready) would wait for, though the account links nothing.
            return []
        # Imported here: render servers import this module too, and must start fast.
        from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

        # No start time: a render host whose clock runs a little behind must not see a token "not yet valid".
        expiry = dt.datetime.now(dt.UTC).replace(microsecond=0) + self.lifetime
        grants = []
        for link in linked:
            creds = self.links.credentials(account_id, link.blob_endpoint)
            if creds is None:
                continue  # unlinked between the two reads
            sas = generate_account_sas(
                creds.storage_account,
                creds.account_key,
                resource_types=ResourceTypes(object=True),
                permission=AccountSasPermissions(read=True),
                expiry=expiry,
            )
            grants.append(BlobGrant(creds.blob_endpoint, creds.storage_account, sas, expiry))
        return grants


class SessionStorage:
    """Render-server side: the grants the control plane pushed; consulted by every http(s) model load."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: tuple[BlobGrant, ...] = ()

    def replace(self, grants: Iterable[BlobGrant]) -> None:
        """The whole set: an account missing from it was unlinked."""
        with self._lock:
            self._grants = tuple(grants)

    @property
    def storage_accounts(self) -> list[str]:
        return [g.storage_account for g in self._grants]

    def _grant_for(self, url: str) -> BlobGrant | None:
        with self._lock:
            grants = self._grants
        # The longest endpoint first: `http://host:10000/acct` must win over a link of `http://host:10000`.
        for grant in sorted(grants, key=lambda g: len(g.blob_endpoint), reverse=True):
            if grant.covers(url):
                return grant
        return None

    def authorize(self, url: str) -> str:
        """`url` with its linked account's read token appended; unchanged if it carries a query (its own SAS) or
        no linked account covers it."""
        if urlsplit(url).query:
            return url
        grant = self._grant_for(url)
        return f"{url}?{grant.sas}" if grant is not None else url

    def denied_hint(self, url: str, now: dt.datetime | None = None) -> str | None:
        """Why a blob service may have refused `url`, for the load error; None when the URL brought its own SAS."""
        if urlsplit(url).query:
            return None
        grant = self._grant_for(url)
        if grant is None:
            return (
                f"the storage account '{storage_account_of(url)}' is not linked to this session's account and the "
                "URL carries no SAS token: link it (openrr account link-storage) before starting the session, or "
                "load a SAS URL"
            )
        if (now or dt.datetime.now(dt.UTC)) >= grant.expires_on:
            return (
                f"the read token for the linked storage account '{grant.storage_account}' expired at "
                f"{grant.expires_on.isoformat()} (the control plane renews it while it runs)"
            )
        return f"read with the linked storage account '{grant.storage_account}'"


def storage_account_of(url: str) -> str:
    """The storage account a blob URL names: host-style `acct.blob.core.windows.net`, else path-style
    `http://127.0.0.1:10000/acct/...` (Azurite, IP endpoints)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ".blob." in host:
        return host.split(".", 1)[0]
    segments = [unquote(s) for s in parts.path.split("/") if s]
    return segments[0] if segments else host


def _endpoint_prefix(url: str) -> str:
    """The URL normalised as endpoints are (scheme and host lower-case, port kept), path as given."""
    parts = urlsplit(url)
    try:
        return normalise_endpoint(f"{parts.scheme}://{parts.netloc}") + parts.path
    except ValueError:
        return ""


SESSION_STORAGE = SessionStorage()
"""This render server's grants (one session per render server process)."""
