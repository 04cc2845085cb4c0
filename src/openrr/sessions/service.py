"""Session use cases. Both API generations and the reconciler go through this one service."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import bindparam, func, select, text, tuple_
from sqlalchemy.orm import Session

from openrr.sessions.model import SessionView
from openrr.sessions.quotas import QuotaExceeded, default_quota
from openrr.sessions.state import (
    LIVE,
    SessionSize,
    SessionStatus,
    lease_deadline,
    transition,
)
from openrr.store.db import Database
from openrr.store.tables import AccountRow, SessionQuotaRow, SessionRow

MAX_LEASE_MINUTES = 1440
_SESSIONS = SessionRow.__table__
# Built once: constructing a statement costs more than running it on SQLite (bench/RESULTS.md).
_GET_SESSION = select(_SESSIONS).where(
    _SESSIONS.c.account_id == bindparam("account_id"), _SESSIONS.c.id == bindparam("session_id")
)
_LIVE_VALUES = sorted(st.value for st in LIVE)
_COUNT_LIVE = select(func.count(), func.count().filter(_SESSIONS.c.account_id == bindparam("account_id"))).where(
    _SESSIONS.c.size == bindparam("size"), _SESSIONS.c.status.in_(_LIVE_VALUES)
)
_QUOTAS = SessionQuotaRow.__table__
_GET_QUOTA = select(_QUOTAS.c.sessions).where(
    _QUOTAS.c.account_id == bindparam("account_id"), _QUOTAS.c.size == bindparam("size")
)


class SessionNotFound(LookupError):
    pass


class SessionConflict(Exception):
    pass


class AccountGone(Exception):
    """The account was deleted after its token was issued."""


class LeaseNotExtendable(Exception):
    """Why a lease update was refused; each API generation words it in its own units."""

    def __init__(self, reason: Literal["ended", "not_larger", "too_large"], status: SessionStatus, current: int):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.current_minutes = current


@dataclass(frozen=True)
class Page:
    items: list[SessionView]
    next_after: tuple[dt.datetime, str] | None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SessionService:
    def __init__(self, db: Database, capacity: dict[str, int], on_change: Callable[[], None]) -> None:
        self.db = db
        self.capacity = capacity
        self._on_change = on_change

    # --- what clients ask for -------------------------------------------------------------------

    def create(
        self, account_id: str, session_id: str, size: SessionSize, lease_minutes: int
    ) -> tuple[SessionView, bool]:
        """Returns the session and whether it was created (False: an identical one already existed)."""
        if not 0 <= lease_minutes <= MAX_LEASE_MINUTES:
            raise ValueError(f"lease {lease_minutes} outside 0..{MAX_LEASE_MINUTES}")
        now = _now()
        with self.db.write() as s:
            # Authentication may answer from a short-lived cache; the write itself must not trust it.
            if s.get(AccountRow, account_id) is None:
                raise AccountGone(account_id)
            existing = s.get(SessionRow, (account_id, session_id))
            if existing is not None:
                if existing.size == size.value and existing.requested_lease_minutes == lease_minutes:
                    return SessionView.of(existing, now), False
                raise SessionConflict(session_id)
            row = SessionRow(
                account_id=account_id,
                id=session_id,
                size=size.value,
                status=SessionStatus.STARTING.value,
                requested_lease_minutes=lease_minutes,
                max_lease_minutes=lease_minutes,
                creation_time=now,
                host_released=True,
            )
            live, mine = self._count_live(s, size, account_id)
            limit = self.capacity.get(size.value, 0)
            # The quota is checked first, and refused outright: waiting cannot help, and the account can act on it.
            quota = self._quota(s, account_id, size)
            if mine >= quota:
                raise QuotaExceeded(account_id, size, quota, mine)
            if live >= limit:
                # ARR accepted the create and failed the session when no server of that size was free.
                transition(
                    row,
                    SessionStatus.ERROR,
                    now,
                    (
                        "NoServerAvailable",
                        f"No render server of size {size.value} is available: all {limit} are in use. "
                        "Stop another session, or try the other size.",
                    ),
                )
            s.add(row)
            view = SessionView.of(row, now)
        self._on_change()
        return view, True

    def get(self, account_id: str, session_id: str) -> SessionView:
        # Core, not the ORM: this is the hottest read (every poll), and the ORM's identity map costs 4x.
        row = self.db.fetch_one(_GET_SESSION, {"account_id": account_id, "session_id": session_id})
        if row is None:
            raise SessionNotFound(session_id)
        return SessionView.of(row, _now())

    def list_live(self, account_id: str, limit: int, after: tuple[dt.datetime, str] | None = None) -> Page:
        """Starting and Ready sessions, oldest first, in pages of `limit`."""
        t = _SESSIONS
        q = (
            select(t)
            .where(t.c.account_id == account_id, t.c.status.in_([st.value for st in LIVE]))
            .order_by(t.c.creation_time, t.c.id)
            .limit(limit + 1)
        )
        if after is not None:
            q = q.where(tuple_(t.c.creation_time, t.c.id) > tuple_(*after))
        now = _now()
        rows = self.db.fetch_all(q)
        items = [SessionView.of(r, now) for r in rows[:limit]]
        next_after = (rows[limit - 1].creation_time, rows[limit - 1].id) if len(rows) > limit else None
        return Page(items, next_after)

    def extend(self, account_id: str, session_id: str, lease_minutes: int) -> SessionView:
        now = _now()
        with self.db.write() as s:
            row = self._get_for_update(s, account_id, session_id)
            status = SessionStatus(row.status)
            reason: Literal["ended", "not_larger", "too_large"] | None = None
            if not status.is_live:
                reason = "ended"
            elif lease_minutes <= row.max_lease_minutes:
                reason = "not_larger"
            elif lease_minutes > MAX_LEASE_MINUTES:
                reason = "too_large"
            if reason is not None:
                raise LeaseNotExtendable(reason, status, row.max_lease_minutes)
            row.max_lease_minutes = lease_minutes
            view = SessionView.of(row, now)
        self._on_change()
        return view

    def stop(self, account_id: str, session_id: str) -> SessionView:
        """Stop a live session; stopping an ended one changes nothing (stop is idempotent)."""
        now = _now()
        with self.db.write() as s:
            row = self._get_for_update(s, account_id, session_id)
            if SessionStatus(row.status).is_live:
                transition(row, SessionStatus.STOPPED, now)
            view = SessionView.of(row, now)
        self._on_change()
        return view

    # --- what the reconciler does ----------------------------------------------------------------

    def needing_attention(self) -> list[SessionRow]:
        """Live sessions, and ended ones whose render server may still run."""
        with self.db.read() as s:
            q = select(SessionRow).where(
                SessionRow.status.in_([st.value for st in LIVE]) | (SessionRow.host_released.is_(False))
            )
            return list(s.scalars(q))

    def attach_host(self, account_id: str, session_id: str, host_ref: str) -> bool:
        """Record the render server placed for a Starting session. False if the session ended meanwhile."""
        with self.db.write() as s:
            row = self._get_for_update(s, account_id, session_id)
            row.host_ref = host_ref
            row.host_released = False
            return SessionStatus(row.status) is SessionStatus.STARTING

    def mark_ready(
        self, account_id: str, session_id: str, hostname: str, handshake_port: int, inspector_port: int
    ) -> bool:
        with self.db.write() as s:
            row = self._get_for_update(s, account_id, session_id)
            if SessionStatus(row.status) is not SessionStatus.STARTING:
                return False
            row.hostname, row.handshake_port, row.inspector_port = hostname, handshake_port, inspector_port
            transition(row, SessionStatus.READY, _now())
            return True

    def fail(self, account_id: str, session_id: str, code: str, message: str) -> bool:
        with self.db.write() as s:
            row = self._get_for_update(s, account_id, session_id)
            if not SessionStatus(row.status).is_live:
                return False
            transition(row, SessionStatus.ERROR, _now(), (code, message))
            return True

    def expire_if_due(self, account_id: str, session_id: str) -> bool:
        now = _now()
        with self.db.write() as s:
            row = self._get_for_update(s, account_id, session_id)
            deadline = lease_deadline(row)
            if SessionStatus(row.status) is not SessionStatus.READY or deadline is None or now < deadline:
                return False
            # The session ends at its deadline even if we notice a little later: elapsed time stays exact.
            transition(row, SessionStatus.EXPIRED, deadline)
            row.error_message = f"The session's lease of {row.max_lease_minutes} minutes ran out."
            return True

    def mark_released(self, account_id: str, session_id: str) -> None:
        with self.db.write() as s:
            row = s.get(SessionRow, (account_id, session_id))
            if row is not None and not SessionStatus(row.status).is_live:
                row.host_released = True

    def purge_older_than(self, days: int) -> int:
        cutoff = _now() - dt.timedelta(days=days)
        with self.db.write() as s:
            rows = list(
                s.scalars(
                    select(SessionRow).where(
                        SessionRow.creation_time < cutoff,
                        SessionRow.status.not_in([st.value for st in LIVE]),
                        SessionRow.host_released.is_(True),
                    )
                )
            )
            for row in rows:
                s.delete(row)
            return len(rows)

    def seconds_until_next_expiry(self) -> float | None:
        now = _now()
        with self.db.read() as s:
            rows = s.scalars(select(SessionRow).where(SessionRow.status == SessionStatus.READY.value))
            deadlines = [d for r in rows if (d := lease_deadline(r)) is not None]
        if not deadlines:
            return None
        return max(0.0, (min(deadlines) - now).total_seconds())

    # --- internals ---------------------------------------------------------------------------------

    def _get_for_update(self, s: Session, account_id: str, session_id: str) -> SessionRow:
        row = s.get(SessionRow, (account_id, session_id), with_for_update=not self.db.is_sqlite)
        if row is None:
            raise SessionNotFound(session_id)
        return row

    def _count_live(self, s: Session, size: SessionSize, account_id: str) -> tuple[int, int]:
        """Live sessions of `size`: in all accounts (capacity) and in this one (quota), in one query."""
        if not self.db.is_sqlite:
            # Serialise capacity and quota checks across replicas (SQLite is serialised by its write lock already).
            s.execute(text("SELECT pg_advisory_xact_lock(7071)"))
        row = s.execute(_COUNT_LIVE, {"size": size.value, "account_id": account_id}).one()
        return int(row[0] or 0), int(row[1] or 0)

    def _quota(self, s: Session, account_id: str, size: SessionSize) -> int:
        set_by_operator = s.execute(_GET_QUOTA, {"account_id": account_id, "size": size.value}).scalar()
        return int(set_by_operator) if set_by_operator is not None else default_quota(self.capacity.get(size.value, 0))
