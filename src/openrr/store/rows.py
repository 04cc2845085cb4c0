"""Row operations both use-case services (sessions, conversions) perform on their records the same way."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from openrr.store.db import Database

R = TypeVar("R")
S = TypeVar("S", bound=enum.Enum)


class RecordNotFound(LookupError):
    """The account has no record of this `kind` with this id (the one argument). The app answers it, wherever an API
    operation raises it, with ARR's 404 naming both."""

    kind: ClassVar[str]

    @property
    def ident(self) -> str:
        return str(self.args[0])


class InvalidTransition(Exception):
    """A status change its state machine does not allow."""


def set_status(row: Any, kind: str, to: S, allowed: Mapping[S, frozenset[S]]) -> None:
    """The step each state machine's `transition` starts with: `row.status` becomes `to`, if `allowed` lists `to`
    for the row's status; InvalidTransition naming the `kind` of record, its id and both statuses otherwise."""
    current = type(to)(row.status)
    if to not in allowed.get(current, frozenset()):
        raise InvalidTransition(f"{kind} '{row.id}' cannot go from {current} to {to}")
    row.status = to.value


def row_for_update(db: Database, s: Session, row_type: type[R], key: tuple[str, str]) -> R | None:
    """The row of primary key `key`, locked until the transaction ends where the database locks rows
    (PostgreSQL: replicas write the same rows); SQLite's write transaction serialises writers already."""
    return s.get(row_type, key, with_for_update=not db.is_sqlite)


def affected(result: Any) -> int:
    """Rows an UPDATE or DELETE matched (a CursorResult's rowcount; the Result type does not declare it)."""
    return int(getattr(result, "rowcount", 0) or 0)


def purge_older_than(db: Database, row_type: type[Any], days: int, ended: ColumnElement[bool], now: dt.datetime) -> int:
    """Delete the records created more than `days` before `now` that `ended` says are finished; how many went."""
    cutoff = now - dt.timedelta(days=days)
    with db.write() as s:
        rows = list(s.scalars(select(row_type).where(row_type.creation_time < cutoff, ended)))
        for row in rows:
            s.delete(row)
        return len(rows)
