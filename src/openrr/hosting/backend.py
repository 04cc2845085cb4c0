"""The one interface between sessions and whatever runs render servers: every call the reconciler and the
service wiring make of a backend is declared here (hosting/local.py implements it; unit tests fake it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SessionKey:
    account_id: str
    session_id: str


@dataclass(frozen=True)
class Placement:
    """Where a client reaches a session's render server, once it answers."""

    hostname: str
    handshake_port: int
    inspector_port: int


class HostGone(Exception):
    """The render server exited or can no longer be found; the message says why."""


class HostingBackend(Protocol):
    shared: bool
    """True: servers outlive this process and every replica sees them (Kubernetes); False: they are this process's
    own (local children), so its warm pool and its servers are per replica."""

    def acquire(self, key: SessionKey, size: str) -> str:
        """Start (or take from a warm pool) a render server for the session; returns its opaque host_ref.

        Idempotent per session: a server already placed for `key` (by this process, or by a replica that died
        mid-start) is returned, never a second one. Blocking: call it from a worker thread.
        """
        ...

    def warm_count(self, size: str) -> int:
        """Free warm servers of `size` now. Cheap (cached; no call to anything remote): the create handlers ask it
        on every create (fast start), and metrics on every scrape."""
        ...

    async def probe(self, host_ref: str, key: SessionKey) -> Placement | None:
        """The placement if the server answers its health request for this session, None if not yet.

        Raises HostGone if the server is dead.
        """
        ...

    def release(self, host_ref: str) -> None:
        """Stop the server and make sure nothing of it is left. Blocking; idempotent."""
        ...

    def maintain(self) -> None:
        """Periodic housekeeping (refill warm pools). Blocking."""
        ...

    def claimed_refs(self) -> dict[str, SessionKey]:
        """The servers this backend runs that were given to a session, with that session; never warm-pool servers
        (not yet given to any), nor one being handed over right now. Cheap: called on every reconcile pass, which
        releases those whose session no longer needs them (stopped, or deleted with its account)."""
        ...

    def shutdown(self) -> None:
        """Stop every server this backend runs; a shared backend does nothing (its servers outlive the control
        plane, and another replica takes their sessions over). Blocking."""
        ...

    async def aclose(self) -> None:
        """Let go of what the backend holds for probing (its HTTP client); after the last probe."""
        ...
