"""The fast start: a create that finds a free warm server answers Ready, so that an SDK client's first poll (sent
at once after the PUT) ends its wait, instead of the next one a polling interval (5 s by default) later."""

from __future__ import annotations

from typing import Protocol

from openrr.hosting.backend import HostingBackend
from openrr.sessions.model import SessionView
from openrr.sessions.service import SessionService
from openrr.sessions.state import SessionStatus


class FastStartSettings(Protocol):
    @property
    def fast_start(self) -> bool: ...
    @property
    def fast_start_wait_s(self) -> float: ...


class StartsNow(Protocol):
    backend: HostingBackend

    async def start_now(self, account_id: str, session_id: str, wait_s: float) -> None: ...


async def after_create(
    view: SessionView, created: bool, settings: FastStartSettings, sessions: SessionService, reconciler: StartsNow
) -> SessionView:
    """The view a create answers with: re-read after a warm start if one was free (Ready when the control plane's
    own health request succeeded within `fast_start_wait_s`), else `view` (Starting; the reconciler was kicked)."""
    if not (created and settings.fast_start and view.status is SessionStatus.STARTING):
        return view
    if reconciler.backend.warm_count(view.size.value) <= 0:
        return view  # a cold start takes seconds: answer Starting now
    await reconciler.start_now(view.account_id, view.id, settings.fast_start_wait_s)
    return await sessions.db.read_async(sessions.get, view.account_id, view.id)
