"""The session state machine. `transition` is the only code that changes a session's status."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import Row

from openrr.store.rows import InvalidTransition as InvalidTransition  # raised by transition
from openrr.store.rows import set_status
from openrr.store.tables import SessionRow


class SessionStatus(enum.StrEnum):
    STARTING = "Starting"
    READY = "Ready"
    STOPPED = "Stopped"
    EXPIRED = "Expired"
    ERROR = "Error"

    @property
    def is_live(self) -> bool:
        return self in LIVE


LIVE = frozenset({SessionStatus.STARTING, SessionStatus.READY})

_ALLOWED: dict[SessionStatus, frozenset[SessionStatus]] = {
    SessionStatus.STARTING: frozenset({SessionStatus.READY, SessionStatus.STOPPED, SessionStatus.ERROR}),
    # Expiry is counted from Ready, so only a Ready session can expire.
    SessionStatus.READY: frozenset({SessionStatus.STOPPED, SessionStatus.EXPIRED, SessionStatus.ERROR}),
}


class SessionSize(enum.StrEnum):
    STANDARD = "Standard"
    PREMIUM = "Premium"

    @classmethod
    def parse(cls, value: str) -> SessionSize:
        """Case-insensitive, as ARR was (its scripts send `standard`)."""
        for size in cls:
            if size.value.lower() == value.strip().lower():
                return size
        raise ValueError(f"Unknown session size '{value}'; expected one of: Standard, Premium.")


# Observed on ARR for Standard; Premium was never published, so we state twice Standard's.
TERAFLOPS = {SessionSize.STANDARD: 8.1, SessionSize.PREMIUM: 16.2}


def transition(
    row: SessionRow,
    to: SessionStatus,
    now: dt.datetime,
    error: tuple[str, str] | None = None,
) -> None:
    set_status(row, "session", to, _ALLOWED)
    if to is SessionStatus.READY:
        row.ready_time = now
    else:
        row.end_time = now
    if error is not None:
        row.error_code, row.error_message = error


def elapsed_seconds(row: SessionRow | Row[Any], now: dt.datetime) -> float:
    """Time spent in Ready (the lease clock)."""
    if row.ready_time is None:
        return 0.0
    end = row.end_time or now
    return max(0.0, (end - row.ready_time).total_seconds())
