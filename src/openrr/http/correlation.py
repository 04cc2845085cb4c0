"""MS-CV correlation vectors: 22 base64 characters plus a `.0` counter, new for every response."""

from __future__ import annotations

import base64
import secrets


def new_cv() -> str:
    return base64.b64encode(secrets.token_bytes(16)).decode()[:22] + ".0"
