"""The health request that decides whether a render server is Ready."""

from __future__ import annotations

from typing import Any

import httpx


async def fetch_health(client: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    """The server's health document, or None if it does not answer (yet)."""
    try:
        r = await client.get(url, timeout=2.0)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    doc = r.json()
    return doc if isinstance(doc, dict) else None
