"""The lease rules, in one place: how long a session may be leased, when a lease may be extended, when it runs
out. The clock runs from Ready: a session expires `max_lease_minutes` after it became Ready, exactly at that
instant (not when someone notices), and its elapsed time stops there. Each API generation words a refusal in
its own units; the rules are these."""

from __future__ import annotations

import datetime as dt
import math
from typing import Literal

from openrr.sessions.state import SessionStatus

MAX_LEASE_MINUTES = 1440
"""ARR's limit: 24 hours, at creation and for every extension."""

CreateRefusal = Literal["negative", "too_large"]
ExtendRefusal = Literal["ended", "not_larger", "too_large"]


class LeaseNotExtendable(Exception):
    """Why a lease update was refused; each API generation words it in its own units."""

    def __init__(self, reason: ExtendRefusal, status: SessionStatus, current: int):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.current_minutes = current


def create_refusal(minutes: int) -> CreateRefusal | None:
    """Why a session cannot be created with a lease of `minutes`; None if it can."""
    if minutes < 0:
        return "negative"
    if minutes > MAX_LEASE_MINUTES:
        return "too_large"
    return None


def extend_refusal(status: SessionStatus, current: int, requested: int) -> ExtendRefusal | None:
    """Why a lease of `current` minutes cannot become `requested` (the total since Ready, not an addition):
    only a live session's lease grows, and only up to MAX_LEASE_MINUTES. None if it can."""
    if not status.is_live:
        return "ended"
    if requested <= current:
        return "not_larger"
    if requested > MAX_LEASE_MINUTES:
        return "too_large"
    return None


def whole_minutes(seconds: float) -> int:
    """A lease given as a duration, in the whole minutes leases are kept in: never less than asked."""
    return math.ceil(seconds / 60) if seconds >= 0 else math.floor(seconds / 60)


def lease_deadline(ready_time: dt.datetime | None, max_lease_minutes: int) -> dt.datetime | None:
    """When the lease runs out; None before the session is Ready (its clock has not started)."""
    if ready_time is None:
        return None
    return ready_time + dt.timedelta(minutes=max_lease_minutes)


def is_due(deadline: dt.datetime, now: dt.datetime) -> bool:
    """Whether a lease ending at `deadline` has run out at `now`: at the deadline itself, it has."""
    return now >= deadline
