"""The query side of keyset paging: rows in (creation time, id) order, a page at a time, each page starting
after the last row of the one before. No offsets, so a page never repeats or skips a row when rows are added
or removed meanwhile. The wire side (skiptoken, @nextLink) is http/paging.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, FromClause, Row, select, tuple_

from openrr.store.db import Database

T = TypeVar("T")
Cursor = tuple[dt.datetime, str]
"""Where a page ends: the (creation time, id) of its last row."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_after: Cursor | None
    """Where the next page starts; None on the last page."""


def keyset_page(
    db: Database,
    table: FromClause,
    where: ColumnElement[bool],
    limit: int,
    after: Cursor | None,
    view: Callable[[Row[Any]], T],
) -> Page[T]:
    """Up to `limit` rows of `table` matching `where` after `after`, oldest first, each made into a `view`.

    `table` has `creation_time` and `id` columns. One row more than asked tells whether another page follows.
    """
    t = table
    q = select(t).where(where).order_by(t.c.creation_time, t.c.id).limit(limit + 1)
    if after is not None:
        q = q.where(tuple_(t.c.creation_time, t.c.id) > tuple_(*after))
    rows = db.fetch_all(q)
    items = [view(r) for r in rows[:limit]]
    next_after = (rows[limit - 1].creation_time, rows[limit - 1].id) if len(rows) > limit else None
    return Page(items, next_after)
