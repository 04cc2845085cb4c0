"""Per-account quotas of live sessions per size: how many Starting + Ready sessions of one size an account may hold.

Capacity bounds what the whole service runs; a quota bounds one account's share of it, so that one tenant cannot
take every render server of a size (for up to a 24 h lease) and shut the others out. Without an operator's value the
quota is the size's capacity minus one, at least 1. `SessionService.create` enforces it in the transaction that
admits a session; this module stores the operator's values and words the refusal.
"""

from __future__ import annotations

from sqlalchemy import select

from openrr.sessions.state import SessionSize
from openrr.store.db import Database
from openrr.store.tables import AccountRow, SessionQuotaRow


def default_quota(capacity: int) -> int:
    """Capacity minus one, at least 1: no single account holds a whole size, yet every account can start one."""
    return max(1, capacity - 1)


class QuotaExceeded(Exception):
    """A create that would take the account past its quota of live sessions of that size."""

    def __init__(self, account_id: str, size: SessionSize, quota: int, live: int) -> None:
        self.account_id = account_id
        self.size = size
        self.quota = quota
        self.live = live
        super().__init__(self.message)

    @property
    def message(self) -> str:
        s = "" if self.live == 1 else "s"
        return (
            f"The account's quota of {self.quota} live {self.size.value} session{'' if self.quota == 1 else 's'} "
            f"is reached: it has {self.live} {self.size.value} session{s} Starting or Ready. Stop one, or ask "
            f"the operator to raise the quota: openrr account set-quota {self.account_id} --size {self.size.value} "
            f"--sessions N"
        )


class UnknownAccount(LookupError):
    pass


class SessionQuotas:
    """The operator's per-account values (`openrr account set-quota`); sizes without one use the default."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def set(self, account_id: str, size: SessionSize, sessions: int | None) -> None:
        """Set the account's quota for `size`; None goes back to the default."""
        if sessions is not None and sessions < 0:
            raise ValueError("a quota cannot be negative")
        with self.db.write() as s:
            if s.get(AccountRow, account_id) is None:
                raise UnknownAccount(account_id)
            row = s.get(SessionQuotaRow, (account_id, size.value))
            if sessions is None:
                if row is not None:
                    s.delete(row)
            elif row is None:
                s.add(SessionQuotaRow(account_id=account_id, size=size.value, sessions=sessions))
            else:
                row.sessions = sessions

    def explicit(self, account_id: str) -> dict[SessionSize, int]:
        """The values set for the account, by size (sizes at their default are absent)."""
        with self.db.read() as s:
            rows = s.scalars(select(SessionQuotaRow).where(SessionQuotaRow.account_id == account_id))
            return {SessionSize(r.size): r.sessions for r in rows}
