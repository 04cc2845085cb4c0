"""What the STS face uses of the control plane's services, and what every resource face (sessions, conversions)
uses: each face's own Protocol adds its service to `ResourceApiServices`."""

from __future__ import annotations

from typing import Protocol, cast

from fastapi import Request

from openrr.accounts.auth import Authenticator
from openrr.accounts.service import AccountService
from openrr.accounts.sts import TokenService
from openrr.config import Settings
from openrr.http.app_state import services_in
from openrr.store.db import Database


class StsServices(Protocol):
    db: Database
    accounts: AccountService
    tokens: TokenService


def sts_services(request: Request) -> StsServices:
    return cast(StsServices, services_in(request))


class ResourceApiServices(Protocol):
    settings: Settings
    db: Database
    auth: Authenticator
