"""The read-only view of a conversion that the API layers serialise."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row

from openrr.conversions.state import ConversionStatus
from openrr.store.tables import ConversionRow


@dataclass(frozen=True)
class ConversionView:
    account_id: str
    id: str
    status: ConversionStatus
    settings: dict[str, Any]
    """Normalised, as echoed: never a SAS token."""
    creation_time: dt.datetime
    progress: float
    attempts: int
    error_code: str | None
    error_message: str | None
    warnings: list[str]

    @property
    def output_asset_uri(self) -> str:
        out = self.settings["outputLocation"]
        return f"{out['storageContainerUri']}/{out.get('blobPrefix', '')}{out['outputAssetFilename']}"

    @classmethod
    def of(cls, row: ConversionRow | Row[Any]) -> ConversionView:
        """From an ORM row or a Core row of the conversions table (same attribute names)."""
        return cls(
            account_id=row.account_id,
            id=row.id,
            status=ConversionStatus(row.status),
            settings=json.loads(row.settings_json),
            creation_time=row.creation_time,
            progress=float(row.progress or 0.0),
            attempts=int(row.attempts or 0),
            error_code=row.error_code,
            error_message=row.error_message,
            warnings=json.loads(row.warnings_json) if row.warnings_json else [],
        )
