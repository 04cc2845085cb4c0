from __future__ import annotations

import re
from typing import Literal

Reason = Literal["denied", "not_found", "unreachable", "failed"]


class StorageError(Exception):
    """A container could not be used; `message` is precise and free of credentials."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


_SECRET_PARAM = re.compile(r"(?i)\b(sig|signature|accountkey|account_key)=[^&;\s'\"]*")


def redact(text: str) -> str:
    """Storage libraries sometimes quote request URLs; their signatures must not reach messages or logs."""
    return _SECRET_PARAM.sub(r"\1=<redacted>", text)
