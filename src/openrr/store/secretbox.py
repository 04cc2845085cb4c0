"""Encryption at rest for storage credentials (linked account keys, SAS tokens of pending conversions).

A database dump alone then reveals no credential: the key lives outside the database, in a file of the
data directory (owner-only) or in OPENRR_SECRETS_KEY, which replicas sharing a database must share.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


class SecretUnreadable(Exception):
    """Encrypted under another key (a replica or data directory with a different secrets key)."""


class SecretBox:
    def __init__(self, key: str | bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_settings(cls, configured: str | None, key_path: Path) -> SecretBox:
        if configured:
            return cls(configured)
        return cls(_key_file(key_path))

    def seal(self, plain: str) -> bytes:
        return self._fernet.encrypt(plain.encode())

    def open(self, sealed: bytes) -> str:
        try:
            return self._fernet.decrypt(sealed).decode()
        except InvalidToken as e:
            raise SecretUnreadable("a stored credential was encrypted with another secrets key") from e


def _key_file(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(Fernet.generate_key())
    try:
        # A hard link appears complete or not at all: of two processes starting together, one key wins.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes().strip()
