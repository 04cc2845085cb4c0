"""The linked-storage registry: blob storage accounts whose shared key an operator gave to an openrr account.

ARR linked a storage account to the ARR account's managed identity; openrr stores the storage account's
key instead (`openrr account link-storage`), encrypted, and never returns it through any API. Conversions
whose settings carry no SAS token for a container under a linked endpoint use it. What a link is (its
credentials, the default endpoint, connection strings) is storage/links.py; this is where links are kept.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select

from openrr.accounts.service import AccountNotFound, normalize_account_id
from openrr.protocol.storage_uri import default_endpoint, normalise_endpoint
from openrr.storage.links import LinkCredentials
from openrr.store.db import Database
from openrr.store.secretbox import SecretBox
from openrr.store.tables import AccountRow, StorageLinkRow


@dataclass(frozen=True)
class StorageLink:
    account_id: str
    blob_endpoint: str
    storage_account: str
    created_at: dt.datetime


class StorageLinks:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    def link(self, account_id: str, storage_account: str, account_key: str, blob_endpoint: str | None) -> StorageLink:
        """Link (or re-link, replacing the key) a storage account to an openrr account."""
        aid = normalize_account_id(account_id)
        endpoint = normalise_endpoint(blob_endpoint or default_endpoint(storage_account))
        now = dt.datetime.now(dt.UTC)
        with self.db.write() as s:
            if aid is None or s.get(AccountRow, aid) is None:
                raise AccountNotFound(account_id)
            row = s.get(StorageLinkRow, (aid, endpoint))
            if row is None:
                row = StorageLinkRow(account_id=aid, blob_endpoint=endpoint, created_at=now)
                s.add(row)
            row.storage_account = storage_account
            row.account_key = self.box.seal(account_key)
            return _view(row)

    def unlink(self, account_id: str, endpoint_or_name: str) -> bool:
        aid = normalize_account_id(account_id) or ""
        with self.db.write() as s:
            rows = [
                r
                for r in s.scalars(select(StorageLinkRow).where(StorageLinkRow.account_id == aid))
                if endpoint_or_name in (r.storage_account, r.blob_endpoint) or _same_endpoint(r, endpoint_or_name)
            ]
            for row in rows:
                s.delete(row)
            return bool(rows)

    def list(self, account_id: str) -> list[StorageLink]:
        aid = normalize_account_id(account_id) or ""
        with self.db.read() as s:
            q = select(StorageLinkRow).where(StorageLinkRow.account_id == aid).order_by(StorageLinkRow.blob_endpoint)
            return [_view(r) for r in s.scalars(q)]

    def credentials(self, account_id: str, blob_endpoint: str) -> LinkCredentials | None:
        with self.db.read() as s:
            row = s.get(StorageLinkRow, (account_id, normalise_endpoint(blob_endpoint)))
            if row is None:
                return None
            return LinkCredentials(row.blob_endpoint, row.storage_account, self.box.open(row.account_key))

    def endpoint_of(self, account_id: str, storage_account: str) -> str | None:
        """The linked endpoint of a storage account named as the v1 API names it (name only)."""
        for link in self.list(account_id):
            if link.storage_account == storage_account:
                return link.blob_endpoint
        return None


def _same_endpoint(row: StorageLinkRow, text: str) -> bool:
    try:
        return row.blob_endpoint == normalise_endpoint(text)
    except ValueError:
        return False


def _view(row: StorageLinkRow) -> StorageLink:
    return StorageLink(row.account_id, row.blob_endpoint, row.storage_account, row.created_at)
