"""Conversion use cases. Both API generations and the job runner go through this one service."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from openrr.accounts.service import require_account
from openrr.accounts.storage_links import StorageLinks
from openrr.conversions.codes import CANCELLED, INTERNAL, LINK_MISSING, LINK_MISSING_MESSAGE
from openrr.conversions.model import ConversionView
from openrr.conversions.request import ConversionRequest, InvalidSetting
from openrr.conversions.state import TERMINAL, ConversionStatus, transition
from openrr.protocol.storage_uri import ContainerUri
from openrr.storage.account_area import AccountArea
from openrr.storage.links import LinkCredentials
from openrr.storage.local import allowed_root
from openrr.store.db import Database
from openrr.store.paging import Cursor, Page, keyset_page
from openrr.store.rows import RecordNotFound, purge_older_than, row_for_update
from openrr.store.secretbox import SecretBox
from openrr.store.tables import ConversionRow
from openrr.util.clock import utc_now as _now

_CONVERSIONS = ConversionRow.__table__
_GET = select(_CONVERSIONS).where(
    _CONVERSIONS.c.account_id == bindparam("account_id"), _CONVERSIONS.c.id == bindparam("conversion_id")
)


class ConversionNotFound(RecordNotFound):
    kind = "conversion"


class ConversionConflict(Exception):
    pass


class LinkedStorageMissing(Exception):
    """A container without a SAS token lies under no storage account linked to the account."""

    def __init__(self, location: str, endpoint: str) -> None:
        super().__init__(f"{location}: no storage account linked for {endpoint}")
        self.location = location
        self.endpoint = endpoint


@dataclass(frozen=True)
class Claim:
    """A job this control plane now runs."""

    account_id: str
    id: str
    attempt: int
    request: ConversionRequest
    input_link: LinkCredentials | None
    output_link: LinkCredentials | None


class ConversionService:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        links: StorageLinks,
        local_roots: list[Path],
        on_change: Callable[[], None],
    ) -> None:
        self.db = db
        self.box = box
        self.links = links
        self.local_roots = local_roots
        self._on_change = on_change

    # --- what clients ask for -------------------------------------------------------------------

    def create(self, account_id: str, conversion_id: str, request: ConversionRequest) -> tuple[ConversionView, bool]:
        """Returns the conversion and whether it was created (False: an identical one already existed)."""
        self._check_reachable(account_id, request)
        now = _now()
        settings_json = request.settings_json()
        secrets = request.secrets_json()
        with self.db.write() as s:
            require_account(s, account_id)
            existing = s.get(ConversionRow, (account_id, conversion_id))
            if existing is not None:
                # SAS tokens are not compared: a retry may well carry freshly generated ones.
                if existing.settings_json == settings_json and existing.access == request.access:
                    return ConversionView.of(existing), False
                raise ConversionConflict(conversion_id)
            row = ConversionRow(
                account_id=account_id,
                id=conversion_id,
                status=ConversionStatus.NOT_STARTED.value,
                settings_json=settings_json,
                access=request.access,
                secrets=self.box.seal(secrets) if secrets else None,
                creation_time=now,
                progress=0.0,
                attempts=0,
            )
            s.add(row)
            view = ConversionView.of(row)
        self._on_change()
        return view, True

    def get(self, account_id: str, conversion_id: str) -> ConversionView:
        row = self.db.fetch_one(_GET, {"account_id": account_id, "conversion_id": conversion_id})
        if row is None:
            raise ConversionNotFound(conversion_id)
        return ConversionView.of(row)

    def list_page(self, account_id: str, limit: int, after: Cursor | None = None) -> Page[ConversionView]:
        """Every conversion of the account, oldest first, in pages of `limit`."""
        t = _CONVERSIONS
        return keyset_page(self.db, t, t.c.account_id == account_id, limit, after, ConversionView.of)

    def cancel(self, account_id: str, conversion_id: str) -> ConversionView:
        """Cancel a conversion that has not ended; an ended one is left as it is."""
        now = _now()
        with self.db.write() as s:
            row = self._get_for_update(s, account_id, conversion_id)
            if not ConversionStatus(row.status).is_terminal:
                stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
                transition(
                    row,
                    ConversionStatus.CANCELLED,
                    now,
                    (CANCELLED, f"The conversion was cancelled on request at {stamp}."),
                )
            view = ConversionView.of(row)
        self._on_change()
        return view

    # --- what the job runner does ----------------------------------------------------------------

    def claim(
        self,
        owner: str,
        limit: int,
        lease_s: float,
        max_attempts: int,
        busy: frozenset[tuple[str, str]] = frozenset(),
    ) -> list[Claim]:
        """Take up to `limit` jobs: waiting ones, and Running ones whose control plane stopped reporting.

        A taken-over job counts as a new attempt; one out of attempts fails instead. `busy` are the jobs the
        caller runs already (late heartbeats must not make it start a second worker for one).
        """
        if limit <= 0:
            return []
        now = _now()
        stale = now - dt.timedelta(seconds=lease_s)
        claims: list[Claim] = []
        failed = False
        with self.db.write() as s:
            t = ConversionRow
            q = (
                select(t)
                .where(
                    (t.status == ConversionStatus.NOT_STARTED.value)
                    | (
                        (t.status == ConversionStatus.RUNNING.value)
                        & or_(t.owner.is_(None), t.heartbeat.is_(None), t.heartbeat < stale)
                    )
                )
                .order_by(t.creation_time, t.id)
                .limit(limit)
            )
            if not self.db.is_sqlite:
                # Replicas claiming at once each get other rows instead of waiting on one another's.
                q = q.with_for_update(skip_locked=True)
            for row in s.scalars(q):
                if (row.account_id, row.id) in busy:
                    continue
                if row.attempts >= max_attempts:
                    transition(row, ConversionStatus.FAILED, now, (INTERNAL, _interrupted(row.attempts)))
                    failed = True
                    continue
                claim = self._claim_row(row, owner, now)
                if claim is None:
                    failed = True
                else:
                    claims.append(claim)
        if failed:
            self._on_change()
        return claims

    def _claim_row(self, row: ConversionRow, owner: str, now: dt.datetime) -> Claim | None:
        if row.status == ConversionStatus.NOT_STARTED.value:
            transition(row, ConversionStatus.RUNNING, now)
        row.owner = owner
        row.heartbeat = now
        row.attempts += 1
        row.progress = 0.0
        try:
            secrets = self.box.open(row.secrets) if row.secrets else None
            request = ConversionRequest.restore(row.settings_json, secrets)
            input_link = self._link(row.account_id, "inputLocation", request.input.access, request.input.container)
            output_link = self._link(row.account_id, "outputLocation", request.output.access, request.output.container)
        except LinkedStorageMissing:
            transition(row, ConversionStatus.FAILED, now, (LINK_MISSING, LINK_MISSING_MESSAGE))
            return None
        except Exception as e:
            transition(row, ConversionStatus.FAILED, now, (INTERNAL, f"The stored job cannot be read: {e}"))
            return None
        return Claim(row.account_id, row.id, row.attempts, request, input_link, output_link)

    def heartbeat(self, owner: str, account_id: str, conversion_id: str, progress: float) -> bool:
        """Report that the job still runs here. False: it was cancelled or taken over; stop its worker."""
        t = ConversionRow
        with self.db.write() as s:
            result = s.execute(
                update(t)
                .where(
                    t.account_id == account_id,
                    t.id == conversion_id,
                    t.owner == owner,
                    t.status == ConversionStatus.RUNNING.value,
                )
                .values(heartbeat=_now(), progress=max(0.0, min(1.0, progress)))
            )
            return bool(getattr(result, "rowcount", 0))

    def finish(
        self,
        owner: str,
        account_id: str,
        conversion_id: str,
        error: tuple[str, str] | None,
        warnings: list[str],
    ) -> bool:
        """Record a job's outcome (error None: Succeeded). False if it was no longer this owner's to finish."""
        now = _now()
        with self.db.write() as s:
            row = row_for_update(self.db, s, ConversionRow, (account_id, conversion_id))
            if row is None or row.owner != owner or row.status != ConversionStatus.RUNNING.value:
                return False
            row.warnings_json = json.dumps(warnings) if warnings else None
            if error is None:
                transition(row, ConversionStatus.SUCCEEDED, now)
            else:
                transition(row, ConversionStatus.FAILED, now, error)
        self._on_change()
        return True

    def retry_or_fail(self, owner: str, account_id: str, conversion_id: str, max_attempts: int, why: str) -> bool:
        """After a worker died without an outcome: True if the job should run again (it stays this owner's)."""
        now = _now()
        with self.db.write() as s:
            row = row_for_update(self.db, s, ConversionRow, (account_id, conversion_id))
            if row is None or row.owner != owner or row.status != ConversionStatus.RUNNING.value:
                return False
            if row.attempts < max_attempts:
                row.attempts += 1
                row.progress = 0.0
                row.heartbeat = now
                return True
            transition(row, ConversionStatus.FAILED, now, (INTERNAL, f"{why} {_interrupted(row.attempts)}"))
        self._on_change()
        return False

    def release(self, owner: str) -> int:
        """On a clean shutdown: hand this owner's running jobs to whoever runs next, without using up an attempt."""
        t = ConversionRow
        with self.db.write() as s:
            result = s.execute(
                update(t)
                .where(t.owner == owner, t.status == ConversionStatus.RUNNING.value)
                .values(owner=None, heartbeat=None, attempts=t.attempts - 1, progress=0.0)
            )
            return int(getattr(result, "rowcount", 0))

    def claimable(self, lease_s: float) -> bool:
        """Whether `claim` would find a job: a read, so that an idle runner takes no write lock."""
        t = _CONVERSIONS
        stale = _now() - dt.timedelta(seconds=lease_s)
        q = (
            select(t.c.id)
            .where(
                (t.c.status == ConversionStatus.NOT_STARTED.value)
                | (
                    (t.c.status == ConversionStatus.RUNNING.value)
                    & or_(t.c.owner.is_(None), t.c.heartbeat.is_(None), t.c.heartbeat < stale)
                )
            )
            .limit(1)
        )
        return self.db.fetch_one(q) is not None

    def purge_older_than(self, days: int) -> int:
        """Ended conversions created more than `days` ago."""
        ended = ConversionRow.status.in_([st.value for st in TERMINAL])
        return purge_older_than(self.db, ConversionRow, days, ended, _now())

    # --- internals ---------------------------------------------------------------------------------

    def _check_reachable(self, account_id: str, request: ConversionRequest) -> None:
        """What can be known before the job runs: linked storage exists, local directories are allowed."""
        for name, access, container in (
            ("inputLocation", request.input.access, request.input.container),
            ("outputLocation", request.output.access, request.output.container),
        ):
            if access == "linked":
                self._link(account_id, name, access, container)
            elif access == "local":
                # Inside the account's own directory once decoded and resolved (`..`, symlinks), or refused with
                # one message whether the directory exists or not: nothing is learnt about other directories.
                dirs = AccountArea(self.local_roots, account_id).dirs
                if allowed_root(container.local_path, dirs) is None:
                    shown = ", ".join(f"{d}/" for d in dirs)
                    raise InvalidSetting(
                        f"settings.{name}.storageContainerUri",
                        f"The directory {container.container[:300]} is not in this account's local storage; "
                        f"file:// containers of this account must lie in {shown}",
                    )

    def _link(self, account_id: str, location: str, access: str, container: ContainerUri) -> LinkCredentials | None:
        if access != "linked":
            return None
        creds = self.links.credentials(account_id, container.endpoint)
        if creds is None:
            raise LinkedStorageMissing(location, container.endpoint)
        return creds

    def _get_for_update(self, s: Session, account_id: str, conversion_id: str) -> ConversionRow:
        row = row_for_update(self.db, s, ConversionRow, (account_id, conversion_id))
        if row is None:
            raise ConversionNotFound(conversion_id)
        return row


def _interrupted(attempts: int) -> str:
    return (
        f"The conversion was interrupted {attempts} times (its worker process or the control plane running it "
        "stopped before it finished), so it is not retried again."
    )
