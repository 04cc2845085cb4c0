"""Session use cases. Both API generations and the reconciler go through this one service."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Row, bindparam, func, or_, select, text, tuple_, update
from sqlalchemy.orm import Session

from openrr.accounts.service import require_account
from openrr.sessions.lease import (
    MAX_LEASE_MINUTES,
    LeaseNotExtendable,
    create_refusal,
    extend_refusal,
    is_due,
    lease_deadline,
)
from openrr.sessions.model import SessionView
from openrr.sessions.quotas import QuotaExceeded, default_quota
from openrr.sessions.state import LIVE, SessionSize, SessionStatus, transition
from openrr.store.conflicts import write_retrying
from openrr.store.db import Database
from openrr.store.paging import Cursor, Page, keyset_page
from openrr.store.rows import RecordNotFound, purge_older_than, row_for_update
from openrr.store.tables import SessionQuotaRow, SessionRow
from openrr.util.clock import Clock, utc_now

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


_NEEDING_ATTENTION: ColumnElement[bool] = SessionRow.status.in_(_LIVE_VALUES) | SessionRow.host_released.is_(False)
"""Live sessions, and ended ones whose render server may still run: what a replica drives."""


@dataclass(frozen=True)
class PassRows:
    """What one reconcile pass works on, read after this replica renewed and claimed what it drives."""

    rows: list[SessionRow]
    """Every record needing attention, whoever drives it (the orphan sweep must know them all)."""
    taken_over: dict[tuple[str, str], str]
    """(account id, session id) of records this replica just took from a replica whose ownership lapsed: that
    replica's id."""


class SessionNotFound(RecordNotFound):
    kind = "session"


class SessionConflict(Exception):
    pass


class SessionService:
    def __init__(
        self,
        db: Database,
        capacity: dict[str, int],
        on_change: Callable[[], None],
        clock: Clock = utc_now,
        replica_id: str | None = None,
        lease_s: float = 10.0,
    ) -> None:
        """`clock`: the time leases and state changes are stamped with (tests pass their own). `replica_id`: who
        this control plane is in the records' owner column; `lease_s`: how long an owner's heartbeat holds."""
        self.db = db
        self.capacity = capacity
        self._on_change = on_change
        self._now = clock
        self.replica_id = replica_id or f"replica-{uuid.uuid4().hex[:12]}"
        self.lease_s = lease_s

    # --- what clients ask for -------------------------------------------------------------------

    def create(
        self, account_id: str, session_id: str, size: SessionSize, lease_minutes: int
    ) -> tuple[SessionView, bool]:
        """Returns the session and whether it was created (False: an identical one already existed)."""
        if create_refusal(lease_minutes) is not None:
            raise ValueError(f"lease {lease_minutes} outside 0..{MAX_LEASE_MINUTES}")
        now = self._now()
        with self.db.write() as s:
            require_account(s, account_id)
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
                # The creating replica drives it: it can start it at once (fast start), with no claim.
                owner=self.replica_id,
                heartbeat=now,
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
        return SessionView.of(row, self._now())

    def list_live(self, account_id: str, limit: int, after: Cursor | None = None) -> Page[SessionView]:
        """Starting and Ready sessions, oldest first, in pages of `limit`."""
        t = _SESSIONS
        now = self._now()
        live = (t.c.account_id == account_id) & t.c.status.in_(_LIVE_VALUES)
        return keyset_page(self.db, t, live, limit, after, lambda r: SessionView.of(r, now))

    def extend(self, account_id: str, session_id: str, lease_minutes: int) -> SessionView:
        now = self._now()
        with self.db.write() as s:
            row = self._get_for_update(s, account_id, session_id)
            status = SessionStatus(row.status)
            reason = extend_refusal(status, row.max_lease_minutes, lease_minutes)
            if reason is not None:
                raise LeaseNotExtendable(reason, status, row.max_lease_minutes)
            row.max_lease_minutes = lease_minutes
            view = SessionView.of(row, now)
        self._on_change()
        return view

    def stop(self, account_id: str, session_id: str) -> SessionView:
        """Stop a live session; stopping an ended one changes nothing (stop is idempotent)."""
        now = self._now()
        with self.db.write() as s:
            row = self._get_for_update(s, account_id, session_id)
            if SessionStatus(row.status).is_live:
                transition(row, SessionStatus.STOPPED, now)
            view = SessionView.of(row, now)
        self._on_change()
        return view

    # --- what the reconciler does ----------------------------------------------------------------
    # A replica changes a record only while it owns it (owner = its replica_id): a replica that stalled past its
    # lease and was taken over finds its late writes refused here, so no transition happens twice.

    def needing_attention(self) -> list[SessionRow]:
        """Live sessions, and ended ones whose render server may still run."""
        with self.db.read() as s:
            return list(s.scalars(select(SessionRow).where(_NEEDING_ATTENTION)))

    def claim_pass(self) -> PassRows:
        """One reconcile pass's ownership work, in one transaction: renew every record this replica owns and claim
        those whose owner let go or lapsed (one locking read, then one UPDATE), read all that need attention.
        Run again from the start should a concurrent transaction abort it (store/conflicts.py)."""
        return write_retrying(self.db, self._claim_pass)

    def _claim_pass(self, s: Session) -> PassRows:
        now = self._now()
        stale = now - dt.timedelta(seconds=self.lease_s)
        t = SessionRow
        claimable = or_(t.owner.is_(None), t.heartbeat.is_(None), t.heartbeat < stale)
        # Renewals and claims lock their rows in one statement: PostgreSQL re-checks the condition of a row that a
        # concurrent pass changed once that pass commits, and skips the row if it no longer holds (one claimer wins).
        held = _lock_in_key_order(s, _NEEDING_ATTENTION & ((t.owner == self.replica_id) | claimable))
        _update_keys(s, held, owner=self.replica_id, heartbeat=now)
        # The owners read under the lock: the replica each record was really taken from.
        taken = {(h.account_id, h.id): h.owner for h in held if h.owner not in (None, self.replica_id)}
        rows = list(s.scalars(select(SessionRow).where(_NEEDING_ATTENTION)))
        return PassRows(rows, taken)

    def adopt(self, placed: dict[tuple[str, str], str]) -> None:
        """Own the records of sessions whose render server this replica found running, whoever owned them: with
        servers that are one machine's processes, only the process on that machine's data directory can drive
        them (one serve per data directory), so its restart takes them back at once. Only while the record still
        names that server (a replica that took the session over and placed it again keeps it)."""
        t = SessionRow
        now = self._now()
        with self.db.write() as s:
            for (account_id, session_id), host_ref in sorted(placed.items()):
                s.execute(
                    update(t)
                    .where(t.account_id == account_id, t.id == session_id, t.host_ref == host_ref)
                    .values(owner=self.replica_id, heartbeat=now)
                )

    def hand_over(self) -> int:
        """Let go of every record this replica owns, for another to claim at its next pass (clean shutdown with
        render servers that outlive the control plane); how many."""

        def let_go(s: Session) -> int:
            held = _lock_in_key_order(s, SessionRow.owner == self.replica_id)
            _update_keys(s, held, owner=None, heartbeat=None)
            return len(held)

        return write_retrying(self.db, let_go)

    def keeps_server(self, account_id: str, session_id: str, host_ref: str) -> bool:
        """Whether the record of a session still needs the server `host_ref` given to it: it exists, names that
        server or none yet (being placed), and is live or its server not yet released. Read fresh: another replica
        may have created the record after this replica's pass read its rows."""
        row = self.db.fetch_one(_GET_SESSION, {"account_id": account_id, "session_id": session_id})
        return row is not None and needs_server(row, host_ref)

    def owned_row(self, account_id: str, session_id: str) -> SessionRow | None:
        """The record if this replica drives it."""
        with self.db.read() as s:
            row = s.get(SessionRow, (account_id, session_id))
            return row if row is not None and row.owner == self.replica_id else None

    def attach_host(self, account_id: str, session_id: str, host_ref: str) -> bool:
        """Record the render server placed for a Starting session. False if the session ended meanwhile, or is
        no longer this replica's (then the server is not recorded: the orphan sweep stops it)."""
        with self.db.write() as s:
            row = self._get_for_update(s, account_id, session_id)
            if row.owner != self.replica_id:
                return False
            row.host_ref = host_ref
            row.host_released = False
            return SessionStatus(row.status) is SessionStatus.STARTING

    def mark_ready(
        self, account_id: str, session_id: str, hostname: str, handshake_port: int, inspector_port: int
    ) -> bool:
        with self.db.write() as s:
            row = self._get_for_update(s, account_id, session_id)
            if SessionStatus(row.status) is not SessionStatus.STARTING or row.owner != self.replica_id:
                return False
            row.hostname, row.handshake_port, row.inspector_port = hostname, handshake_port, inspector_port
            transition(row, SessionStatus.READY, self._now())
            return True

    def fail(self, account_id: str, session_id: str, code: str, message: str) -> bool:
        with self.db.write() as s:
            row = self._get_for_update(s, account_id, session_id)
            if not SessionStatus(row.status).is_live or row.owner != self.replica_id:
                return False
            transition(row, SessionStatus.ERROR, self._now(), (code, message))
            return True

    def expire_if_due(self, account_id: str, session_id: str) -> bool:
        now = self._now()
        with self.db.write() as s:
            row = self._get_for_update(s, account_id, session_id)
            deadline = lease_deadline(row.ready_time, row.max_lease_minutes)
            if SessionStatus(row.status) is not SessionStatus.READY or deadline is None or not is_due(deadline, now):
                return False
            if row.owner != self.replica_id:
                return False
            # The session ends at its deadline even if we notice a little later: elapsed time stays exact.
            transition(row, SessionStatus.EXPIRED, deadline)
            row.error_message = f"The session's lease of {row.max_lease_minutes} minutes ran out."
            return True

    def mark_released(self, account_id: str, session_id: str) -> None:
        with self.db.write() as s:
            row = row_for_update(self.db, s, SessionRow, (account_id, session_id))
            if row is not None and not SessionStatus(row.status).is_live and row.owner == self.replica_id:
                row.host_released = True

    def purge_older_than(self, days: int) -> int:
        """Ended sessions whose render server is gone, created more than `days` ago."""
        ended = SessionRow.status.not_in(_LIVE_VALUES) & SessionRow.host_released.is_(True)
        return purge_older_than(self.db, SessionRow, days, ended, self._now())

    def seconds_until_next_expiry(self) -> float | None:
        now = self._now()
        with self.db.read() as s:
            rows = s.scalars(select(SessionRow).where(SessionRow.status == SessionStatus.READY.value))
            deadlines = [d for r in rows if (d := lease_deadline(r.ready_time, r.max_lease_minutes)) is not None]
        if not deadlines:
            return None
        return max(0.0, (min(deadlines) - now).total_seconds())

    # --- internals ---------------------------------------------------------------------------------

    def _get_for_update(self, s: Session, account_id: str, session_id: str) -> SessionRow:
        row = row_for_update(self.db, s, SessionRow, (account_id, session_id))
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


UPDATE_CHUNK = 500
"""Records per UPDATE of `_update_keys`: 1000 bound parameters, far under PostgreSQL's limit of 65535 per
statement; one statement for every replica of a normal size."""


HeldRow = Row[str, str, str | None]
"""A session row locked by `_lock_in_key_order`: account id, session id, owner."""


def _lock_in_key_order(s: Session, condition: ColumnElement[bool]) -> Sequence[HeldRow]:
    """Lock the session rows matching `condition` (PostgreSQL; SQLite's writers are serialised already) and return
    their keys and owners as read under the lock.

    Every statement that locks several session rows locks them in this one order, by primary key: two
    transactions that lock in different orders (an UPDATE locks in heap order) deadlock, and PostgreSQL then
    aborts one. Rows are locked as the sorted read returns them; a row a concurrent transaction changed is read
    again once that one commits, and left out if it no longer matches."""
    t = SessionRow
    locking = select(t.account_id, t.id, t.owner).where(condition).order_by(t.account_id, t.id).with_for_update()
    return s.execute(locking).all()


def _update_keys(s: Session, keys: Sequence[HeldRow], **values: Any) -> None:
    """Set `values` on the session rows of `keys` (locked by `_lock_in_key_order` in this transaction): exactly
    those, not the rows a fresh WHERE would match now (a row that matched since would be locked out of order)."""
    t = SessionRow
    for start in range(0, len(keys), UPDATE_CHUNK):
        chunk = [(k.account_id, k.id) for k in keys[start : start + UPDATE_CHUNK]]
        s.execute(update(t).where(tuple_(t.account_id, t.id).in_(chunk)).values(**values))


def needs_server(row: SessionRow | Row[Any], host_ref: str) -> bool:
    """Whether `row` still needs the server `host_ref` given to its session (see keeps_server)."""
    names_it = row.host_ref is None or row.host_ref == host_ref
    return names_it and (SessionStatus(row.status).is_live or not row.host_released)
