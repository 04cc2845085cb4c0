from __future__ import annotations

from typing import Literal

from openrr.protocol.redaction import redact

__all__ = ["Reason", "StorageError", "redact"]

Reason = Literal["denied", "not_found", "unreachable", "refused", "failed"]
"""`refused`: the address guard refused the container's address (storage/guard.py), before any connection."""


class StorageError(Exception):
    """A container could not be used; `message` is precise and free of credentials."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
