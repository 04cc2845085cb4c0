"""The conversion state machine. `transition` is the only code that changes a conversion's status."""

from __future__ import annotations

import datetime as dt
import enum

from openrr.store.rows import InvalidTransition as InvalidTransition  # raised by transition
from openrr.store.rows import set_status
from openrr.store.tables import ConversionRow


class ConversionStatus(enum.StrEnum):
    NOT_STARTED = "NotStarted"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({ConversionStatus.SUCCEEDED, ConversionStatus.FAILED, ConversionStatus.CANCELLED})

_ALLOWED: dict[ConversionStatus, frozenset[ConversionStatus]] = {
    # A job can fail before it runs (its linked storage was unlinked meanwhile) or be cancelled while waiting.
    ConversionStatus.NOT_STARTED: frozenset(
        {ConversionStatus.RUNNING, ConversionStatus.FAILED, ConversionStatus.CANCELLED}
    ),
    ConversionStatus.RUNNING: frozenset(
        {ConversionStatus.SUCCEEDED, ConversionStatus.FAILED, ConversionStatus.CANCELLED}
    ),
}


def transition(
    row: ConversionRow,
    to: ConversionStatus,
    now: dt.datetime,
    error: tuple[str, str] | None = None,
) -> None:
    set_status(row, "conversion", to, _ALLOWED)
    if to is ConversionStatus.RUNNING:
        row.start_time = now
        return
    row.end_time = now
    # Credentials are needed only while the job may still run.
    row.secrets = None
    row.owner = None
    if to is ConversionStatus.SUCCEEDED:
        row.progress = 1.0
    if error is not None:
        row.error_code, row.error_message = error
