"""The client library of an openrr service; it imports nothing of the server (only openrr.protocol).

- RestClient: the STS and the 2021-01-01 session API; ConversionClient: its conversion calls (both synchronous).
- RenderSessionClient: a render session's protocol, frames as numpy arrays (examples/render_frame.py).
- open_webrtc / WebRTCVideo: the same session's frames over WebRTC.
- ClientError: the base of every exception they raise.

The render and WebRTC clients are imported on first use: they bring websockets, simplejpeg, aiortc and PyAV, which
the command-line tools built on the REST client should not pay for at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from openrr.client.arrconfig import ConfigError
from openrr.client.conversion_rest import ConversionClient
from openrr.client.convert_settings import StorageFailure
from openrr.client.errors import ClientError
from openrr.client.rest import ArrConnectionError, ArrHttpError, RestClient

if TYPE_CHECKING:
    from openrr.client.render_session import Frame, RenderSessionClient, SessionError
    from openrr.client.webrtc import WebRTCVideo, open_webrtc

_LAZY = {
    "Frame": "openrr.client.render_session",
    "RenderSessionClient": "openrr.client.render_session",
    "SessionError": "openrr.client.render_session",
    "WebRTCVideo": "openrr.client.webrtc",
    "open_webrtc": "openrr.client.webrtc",
}

__all__ = [
    "ArrConnectionError",
    "ArrHttpError",
    "ClientError",
    "ConfigError",
    "ConversionClient",
    "Frame",
    "RenderSessionClient",
    "RestClient",
    "SessionError",
    "StorageFailure",
    "WebRTCVideo",
    "open_webrtc",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'openrr.client' has no attribute {name!r}")
