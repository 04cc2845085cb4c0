"""What the STS face uses of the control plane's services."""

from __future__ import annotations

from typing import Protocol, cast

from fastapi import Request

from openrr.accounts.service import AccountService
from openrr.accounts.sts import TokenService
from openrr.http.app_state import services_in
from openrr.store.db import Database


class StsServices(Protocol):
    db: Database
    accounts: AccountService
    tokens: TokenService


def sts_services(request: Request) -> StsServices:
    return cast(StsServices, services_in(request))
