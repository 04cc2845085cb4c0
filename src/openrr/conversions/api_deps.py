"""What the conversion API faces use of the control plane's services."""

from __future__ import annotations

from typing import Protocol, cast

from fastapi import Request

from openrr.accounts.auth import Authenticator
from openrr.accounts.storage_links import StorageLinks
from openrr.config import Settings
from openrr.conversions.service import ConversionService
from openrr.http.app_state import services_in
from openrr.store.db import Database


class ConversionApiServices(Protocol):
    settings: Settings
    db: Database
    conversions: ConversionService
    auth: Authenticator
    links: StorageLinks


def conversion_services(request: Request) -> ConversionApiServices:
    return cast(ConversionApiServices, services_in(request))
