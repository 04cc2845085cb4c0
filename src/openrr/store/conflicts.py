"""Transient conflicts between concurrent transactions (PostgreSQL's deadlock and serialization failures), and
running a write transaction again when one ends it.

Replicas lock rows in one order wherever a statement locks several (sessions: by primary key), so deadlocks between
them should not happen; the retry is the safety net that keeps a pass from failing should one still occur (a lock
order this code does not control: foreign keys, another tool on the same database).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from openrr.store.db import Database

T = TypeVar("T")
logger = logging.getLogger(__name__)

TRANSIENT_SQLSTATES = {"40P01": "deadlock detected", "40001": "could not serialize access"}
"""PostgreSQL's codes for a transaction aborted only because of a concurrent one: running it again succeeds."""
ATTEMPTS = 5
"""Tries of one transaction: a conflict needs two transactions in a lock cycle, and the loser's next try finds the
winner committed; five covers repeated bad luck without hiding a conflict that happens every time."""


def is_transient_conflict(error: BaseException) -> bool:
    """Whether `error` is a driver error that ended the transaction for a concurrent one's sake."""
    return isinstance(error, DBAPIError) and getattr(error.orig, "sqlstate", None) in TRANSIENT_SQLSTATES


def write_retrying(db: Database, work: Callable[[Session], T], attempts: int = ATTEMPTS) -> T:
    """`work` in one write transaction (`db.write()`), run again from the start in a new one if a transient
    conflict aborted it, up to `attempts` times; the last conflict is raised. `work` must be safe to run again:
    everything it did in the aborted transaction was rolled back."""
    for attempt in range(1, attempts + 1):
        try:
            with db.write() as s:
                return work(s)
        except DBAPIError as e:
            if attempt == attempts or not is_transient_conflict(e):
                raise
            code = getattr(e.orig, "sqlstate", "")
            logger.warning(
                "transaction aborted (%s: %s); running it again, try %d of %d",
                code,
                TRANSIENT_SQLSTATES[code],
                attempt + 1,
                attempts,
            )
            # A random pause, growing with each try, so that the two transactions do not meet again in step.
            time.sleep(random.uniform(0, 0.02 * attempt))
    raise AssertionError("unreachable: the last attempt returns or raises")
