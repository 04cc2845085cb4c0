"""What the session API faces use of the control plane's services."""

from __future__ import annotations

from typing import Protocol, cast

from fastapi import Request

from openrr.accounts.auth import Authenticator
from openrr.config import Settings
from openrr.http.app_state import services_in
from openrr.sessions.service import SessionService
from openrr.store.db import Database


class SessionApiServices(Protocol):
    settings: Settings
    db: Database
    sessions: SessionService
    auth: Authenticator


def session_services(request: Request) -> SessionApiServices:
    return cast(SessionApiServices, services_in(request))
