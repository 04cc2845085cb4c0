"""The conversion calls of ARR's 2021-01-01 API (what Conversion.ps1 called), plus openrr's `:cancel`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from openrr.client.rest import RestClient, _json


class ConversionClient(RestClient):
    def _conversions_url(self, conversion_id: str) -> str:
        base = f"{self.endpoint}/accounts/{quote(self.account_id, safe='')}/conversions"
        return self._with_version(f"{base}/{quote(conversion_id, safe='')}")

    def create_conversion(self, conversion_id: str, settings: dict[str, Any]) -> dict[str, Any]:
        url = self._conversions_url(conversion_id)
        return _json(self._api(f"creating conversion '{conversion_id}'", "PUT", url, {"settings": settings}))

    def get_conversion(self, conversion_id: str) -> dict[str, Any]:
        url = self._conversions_url(conversion_id)
        return _json(self._api(f"getting conversion '{conversion_id}'", "GET", url))

    def cancel_conversion(self, conversion_id: str) -> dict[str, Any]:
        # `:cancel` goes before the query string: _conversions_url already added api-version.
        base, _, query = self._conversions_url(conversion_id).partition("?")
        return _json(self._api(f"cancelling conversion '{conversion_id}'", "POST", f"{base}/:cancel?{query}"))
