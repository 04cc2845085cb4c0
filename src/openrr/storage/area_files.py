"""A tenant's local files as a render server reads them: through a `LocalFiles`, never by opening a tenant's path
directly. `AreaFiles` reads an account's area (storage/account_area.py); the render server's broker client
(render/local_files.py) reads through the control plane."""

from __future__ import annotations

from typing import Protocol

from openrr.storage.account_area import AccountArea, AreaRefused
from openrr.storage.fetch import FetchError
from openrr.util.paths import shown

LOCAL_FILES_OFF = "local files are not enabled for this session"


class LocalFileRefused(FetchError):
    """A local file could not be read; the message never tells what exists outside the account's area.

    `over_limit`: the file lies in the area but is larger than the bytes left for the model (fails the whole load,
    where a missing texture only leaves the model untextured)."""

    def __init__(self, message: str, *, over_limit: bool = False) -> None:
        super().__init__(message)
        self.over_limit = over_limit


class LocalFiles(Protocol):
    """How a render server reads a tenant's local files: `AreaFiles` directly, or the control plane's file broker
    (hosting/file_broker.py) for render servers that run as a user who cannot read the storage roots."""

    def read(self, requested: str, max_bytes: int) -> bytes:
        """The whole file a tenant named (a path relative to its area, an absolute path or a file:// URL, decoded
        once). Raises LocalFileRefused for a path outside the area, a missing or unreadable file, a directory, or a
        file over `max_bytes`; the first four with one and the same message."""
        ...

    def display(self, requested: str) -> str:
        """How to name the file in messages: the tenant's own words, nothing resolved from them."""
        ...


class AreaFiles:
    """LocalFiles read straight from an account's area (storage/account_area.py), by a process that may."""

    def __init__(self, area: AccountArea) -> None:
        self.area = area

    def read(self, requested: str, max_bytes: int) -> bytes:
        try:
            return self.area.read(requested, max_bytes)
        except AreaRefused as e:
            raise LocalFileRefused(e.message, over_limit=e.over_limit) from None

    def display(self, requested: str) -> str:
        return shown(requested)
