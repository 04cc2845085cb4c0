"""What the session API faces use of the control plane's services."""

from __future__ import annotations

from typing import Protocol, cast

from fastapi import Request

from openrr.accounts.api_deps import ResourceApiServices
from openrr.http.app_state import services_in
from openrr.sessions.reconciler import Reconciler
from openrr.sessions.service import SessionService


class SessionApiServices(ResourceApiServices, Protocol):
    sessions: SessionService
    reconciler: Reconciler


def session_services(request: Request) -> SessionApiServices:
    return cast(SessionApiServices, services_in(request))
