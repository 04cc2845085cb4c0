"""Account registry: create, list, rotate keys, delete, authenticate."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from openrr.accounts.keys import hash_key, key_fingerprint, key_matches, new_key
from openrr.store.db import Database
from openrr.store.tables import AccountRow, SessionRow

KeyName = Literal["primary", "secondary"]
DEFAULT_DOMAIN = "localhost"
EXISTS_TTL_S = 2.0
"""How long a replica may answer from its cache whether an account exists and which keys are current: a deleted
account's or a rotated key's unexpired tokens may be honoured for this long by a replica that saw them valid."""
_ACCOUNTS = AccountRow.__table__
_GET_ACCOUNT = select(_ACCOUNTS).where(_ACCOUNTS.c.id == bindparam("account_id"))


@dataclass(frozen=True)
class Account:
    account_id: str
    domain: str
    created_at: dt.datetime


@dataclass(frozen=True)
class AccountWithKeys:
    account: Account
    primary_key: str
    secondary_key: str


class AccountNotFound(LookupError):
    pass


class AccountGone(Exception):
    """The account was deleted after its token was issued."""


def require_account(s: Session, account_id: str) -> None:
    """Inside a write that creates something of the account: raises AccountGone if the account is gone.
    Authentication may answer from a short-lived cache (EXISTS_TTL_S); the write itself must not trust it."""
    if s.get(AccountRow, account_id) is None:
        raise AccountGone(account_id)


def normalize_account_id(value: str) -> str | None:
    """The canonical (lower-case, hyphenated) form of a GUID, or None if `value` is not one."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None


def _view(row: AccountRow) -> Account:
    return Account(account_id=row.id, domain=row.domain, created_at=row.created_at)


def _row(s: Session, account_id: str) -> AccountRow:
    """The account's row, its id given in any form `normalize_account_id` accepts; AccountNotFound naming the id as
    given when it is not a GUID or no such account exists."""
    aid = normalize_account_id(account_id)
    row = s.get(AccountRow, aid) if aid else None
    if row is None:
        raise AccountNotFound(account_id)
    return row


class AccountService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._keys_cache: dict[str, tuple[frozenset[str], float]] = {}

    def create(self, domain: str = DEFAULT_DOMAIN, account_id: str | None = None) -> AccountWithKeys:
        aid = normalize_account_id(account_id) if account_id else str(uuid.uuid4())
        if aid is None:
            raise ValueError(f"account id {account_id!r} is not a GUID")
        primary, secondary = new_key(), new_key()
        row = AccountRow(
            id=aid,
            domain=domain,
            primary_key_hash=hash_key(primary),
            secondary_key_hash=hash_key(secondary),
            created_at=dt.datetime.now(dt.UTC),
        )
        with self.db.write() as s:
            if s.get(AccountRow, aid) is not None:
                raise ValueError(f"account {aid} already exists")
            s.add(row)
        return AccountWithKeys(_view(row), primary, secondary)

    def list(self) -> list[Account]:
        with self.db.read() as s:
            return [_view(r) for r in s.scalars(select(AccountRow).order_by(AccountRow.created_at))]

    def get(self, account_id: str) -> Account:
        with self.db.read() as s:
            return _view(_row(s, account_id))

    def exists(self, account_id: str) -> bool:
        """Whether the account exists; answers from a cache for up to EXISTS_TTL_S (checked on every API call)."""
        return bool(self.token_key_ids(account_id))

    def token_key_ids(self, account_id: str) -> frozenset[str]:
        """Fingerprints (claim `kfp`) of the account's current primary and secondary keys; empty if the account
        does not exist. Tokens minted with any other key are revoked. Cached for up to EXISTS_TTL_S, so a rotation
        or deletion on another replica takes effect here within that time."""
        now = time.monotonic()
        cached = self._keys_cache.get(account_id)
        if cached is not None and now - cached[1] < EXISTS_TTL_S:
            return cached[0]
        aid = normalize_account_id(account_id)
        row = self.db.fetch_one(_GET_ACCOUNT, {"account_id": aid}) if aid is not None else None
        ids = (
            frozenset({key_fingerprint(row.primary_key_hash), key_fingerprint(row.secondary_key_hash)})
            if row is not None
            else frozenset()
        )
        if len(self._keys_cache) > 10_000:
            self._keys_cache.clear()
        self._keys_cache[account_id] = (ids, now)
        return ids

    def rotate_key(self, account_id: str, which: KeyName) -> str:
        """Replace one key; the old one stops working at once."""
        key = new_key()
        with self.db.write() as s:
            row = _row(s, account_id)
            if which == "primary":
                row.primary_key_hash = hash_key(key)
            else:
                row.secondary_key_hash = hash_key(key)
        self._keys_cache.clear()
        return key

    def delete(self, account_id: str) -> None:
        with self.db.write() as s:
            # The cascade deletes the account's sessions in the table's order; replicas' reconcile passes lock session
            # rows in key order (sessions/service.py), so take those locks first, in that order: no deadlock.
            s.execute(
                select(SessionRow.id)
                .where(SessionRow.account_id == account_id)
                .order_by(SessionRow.account_id, SessionRow.id)
                .with_for_update()
            ).all()
            s.delete(_row(s, account_id))
        self._keys_cache.clear()

    def authenticate(self, account_id: str, key: str) -> Account | None:
        aid = normalize_account_id(account_id)
        if aid is None:
            return None
        row = self.db.fetch_one(_GET_ACCOUNT, {"account_id": aid})
        if row is None:
            return None
        # Check both digests every time so the answer's timing does not say which key matched.
        ok_primary = key_matches(key, row.primary_key_hash)
        ok_secondary = key_matches(key, row.secondary_key_hash)
        return Account(row.id, row.domain, row.created_at) if ok_primary or ok_secondary else None
