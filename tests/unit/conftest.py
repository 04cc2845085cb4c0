"""Fixtures of the fast layer: everything in process, nothing listens on a port."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests (`pytest.mark.anyio`, the plugin that ships with anyio) run on asyncio, as the service does."""
    return "asyncio"
