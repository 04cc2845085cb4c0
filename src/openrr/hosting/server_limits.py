"""The limits and timeouts every render server is started with, whichever backend starts it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerLimits:
    """Fields named as render/control.py's RenderServerArgs names them; None: the server's own default."""

    standard_primitive_limit: int | None = None
    fetch_allow: tuple[str, ...] = ()
    """Non-public addresses a render server may fetch models from (storage/guard.py; --fetch-allow)."""
    model_max_bytes: int = 2 * 1024**3
    model_max_compression_ratio: float = 200.0
    texture_max_dimension: int | None = None
    texture_max_pixels: int | None = None
    handshake_timeout_s: float = 10.0
    """A connection that has not completed TLS and sent a request within this long is dropped."""
    keep_alive_timeout_s: float = 10.0
    orphan_timeout_s: float | None = None
    """A server that hears no request with its control secret for this long stops itself; None: never."""

    def as_args(self) -> dict[str, Any]:
        """Keyword arguments of RenderServerArgs."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
