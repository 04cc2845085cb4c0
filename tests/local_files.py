"""LocalFiles for tests about parsing models, not about containment (tests/security/ has those): any absolute
path, read through the same AccountArea code as a session's, with the path's top directory as the "area"."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from openrr.render.scene import AreaFiles
from openrr.storage.account_area import AccountArea, decode, shown


class HostFiles:
    def read(self, requested: str, max_bytes: int) -> bytes:
        top = PurePosixPath(decode(requested)).parts[1]
        return AreaFiles(AccountArea([Path("/")], top)).read(requested, max_bytes)

    def display(self, requested: str) -> str:
        return shown(requested)


HOST_FILES = HostFiles()
