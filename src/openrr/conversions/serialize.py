"""Conversion JSON for the 2021-01-01 API: ARR's names; `error` always present (null unless it failed)."""

from __future__ import annotations

from typing import Any

from openrr.conversions.model import ConversionView
from openrr.conversions.state import ConversionStatus


def creation_time_text(v: ConversionView) -> str:
    # ARR wrote conversion times with 7 fractional digits and `Z` (.NET's round-trip format).
    return v.creation_time.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def conversion_json(v: ConversionView) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": v.id,
        "creationTime": creation_time_text(v),
        "settings": v.settings,
    }
    if v.status is ConversionStatus.SUCCEEDED:
        doc["output"] = {"outputAssetUri": v.output_asset_uri}
    doc["error"] = {"code": v.error_code, "message": v.error_message or ""} if v.error_code else None
    doc["status"] = v.status.value
    # openrr's one addition (clients that follow ARR's schema ignore it): how far the job has got, 0 to 1.
    doc["progress"] = round(v.progress, 4)
    return doc
