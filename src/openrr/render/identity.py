"""Which session a render server serves; set at start, or later when a warm server is assigned."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServerIdentity:
    host_id: str
    size: str
    session_id: str | None = None
    account_id: str | None = None

    def assign(self, session_id: str, account_id: str) -> bool:
        """False if the server already serves another session (a server is never reused)."""
        if self.session_id is not None:
            return (self.session_id, self.account_id) == (session_id, account_id)
        self.session_id, self.account_id = session_id, account_id
        return True
