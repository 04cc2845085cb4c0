from __future__ import annotations

from fastapi.responses import JSONResponse


class ArrJSONResponse(JSONResponse):
    """JSON with the content type ARR sent (`application/json; charset=utf-8`)."""

    media_type = "application/json; charset=utf-8"
