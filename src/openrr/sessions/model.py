"""The read-only view of a session that the API layers serialise."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row

from openrr.sessions.state import TERAFLOPS, SessionSize, SessionStatus, elapsed_seconds
from openrr.store.tables import SessionRow


@dataclass(frozen=True)
class SessionView:
    account_id: str
    id: str
    size: SessionSize
    status: SessionStatus
    max_lease_minutes: int
    elapsed_s: float
    creation_time: dt.datetime
    hostname: str | None
    handshake_port: int | None
    inspector_port: int | None
    error_code: str | None
    error_message: str | None
    teraflops: float | None

    @property
    def elapsed_minutes(self) -> int:
        return int(self.elapsed_s // 60)

    @classmethod
    def of(cls, row: SessionRow | Row[Any], now: dt.datetime) -> SessionView:
        """From an ORM row or a Core row of the sessions table (same attribute names)."""
        status = SessionStatus(row.status)
        ready = status is SessionStatus.READY
        return cls(
            account_id=row.account_id,
            id=row.id,
            size=SessionSize(row.size),
            status=status,
            max_lease_minutes=row.max_lease_minutes,
            elapsed_s=elapsed_seconds(row, now),
            creation_time=row.creation_time,
            # Connection details only while the server accepts connections (ARR drops them once stopped).
            hostname=row.hostname if ready else None,
            handshake_port=row.handshake_port if ready else None,
            inspector_port=row.inspector_port if ready else None,
            error_code=row.error_code,
            error_message=row.error_message,
            # ARR reports compute once a server was Ready, and keeps it after the session ends.
            teraflops=TERAFLOPS[SessionSize(row.size)] if row.ready_time else None,
        )
