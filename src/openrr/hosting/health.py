"""The health request that decides whether a render server is Ready."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence

import httpx

from openrr.render.control import HealthReport, control_headers


async def fetch_health(client: httpx.AsyncClient, url: str, control_secret: str) -> HealthReport | None:
    """The server's health report, or None if it does not answer (yet) with one.

    The control secret makes the server name the session and account it serves (what the reconciler checks);
    without it, /health says only that the server is up.
    """
    try:
        r = await client.get(url, timeout=2.0, headers=control_headers(control_secret))
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    try:
        return HealthReport.from_json(r.json())
    except ValueError:
        return None  # not (yet) a render server's answer: as if it did not answer


def keep_alive(targets: Sequence[tuple[str, str]], verify: ssl.SSLContext | bool) -> None:
    """One health request with its control secret to each (health URL, secret), all at once: what keeps a server
    without a session (warm) from expiring as an orphan (render/orphan.py); a session's server gets its probes.

    Blocking: for a backend's `maintain`, which runs in a worker thread (no event loop of its own there).
    """
    if not targets:
        return

    async def send() -> None:
        async with httpx.AsyncClient(verify=verify) as client:
            await asyncio.gather(*(fetch_health(client, url, secret) for url, secret in targets))

    asyncio.run(send())
