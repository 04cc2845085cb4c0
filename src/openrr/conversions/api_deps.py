"""What the conversion API faces use of the control plane's services."""

from __future__ import annotations

from typing import Protocol, cast

from fastapi import Request

from openrr.accounts.api_deps import ResourceApiServices
from openrr.accounts.storage_links import StorageLinks
from openrr.conversions.service import ConversionService
from openrr.http.app_state import services_in


class ConversionApiServices(ResourceApiServices, Protocol):
    conversions: ConversionService
    links: StorageLinks


def conversion_services(request: Request) -> ConversionApiServices:
    return cast(ConversionApiServices, services_in(request))
