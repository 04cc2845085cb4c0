"""Leases of singleton jobs: work that one replica at a time must do (refilling a shared warm pool, purging old
records). A lease is held until it expires; its holder renews it by asking again."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

from openrr.store.db import Database
from openrr.store.rows import affected
from openrr.store.tables import LeaseRow
from openrr.util.clock import utc_now


def try_hold(db: Database, name: str, owner: str, ttl_s: float, now: dt.datetime | None = None) -> bool:
    """Take or renew lease `name` for `owner` until `ttl_s` from now; False while another owner holds it."""
    now = now or utc_now()
    expires = now + dt.timedelta(seconds=ttl_s)
    with db.write() as s:
        # One conditional UPDATE: the row lock makes it atomic across replicas (PostgreSQL re-checks the WHERE
        # once a concurrent holder's transaction ends; SQLite serialises writers).
        taken = s.execute(
            update(LeaseRow)
            .where(LeaseRow.name == name, or_(LeaseRow.owner == owner, LeaseRow.expires < now))
            .values(owner=owner, expires=expires)
        )
        if affected(taken) == 1:
            return True
        if s.get(LeaseRow, name) is not None:
            return False
    try:
        with db.write() as s:
            s.add(LeaseRow(name=name, owner=owner, expires=expires))
    except IntegrityError:
        return False  # another replica created it first
    return True


def release(db: Database, name: str, owner: str) -> None:
    """Let go of lease `name` if `owner` holds it (clean shutdown: the next replica need not wait for it to expire)."""
    with db.write() as s:
        s.execute(update(LeaseRow).where(LeaseRow.name == name, LeaseRow.owner == owner).values(expires=utc_now()))
