"""LocalFiles for tests about parsing models, not about containment (tests/security/ has those): any absolute
path, read through the same AccountArea code as a session's, with the path's top directory as the "area"."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from openrr.model.mesh import ModelData
from openrr.render.model_loader import load_model as load_in_session
from openrr.storage.account_area import AccountArea, decode
from openrr.storage.area_files import AreaFiles
from openrr.storage.fetch import HttpOptions
from openrr.storage.guard import FetchPolicy
from openrr.util.paths import shown


class HostFiles:
    def read(self, requested: str, max_bytes: int) -> bytes:
        top = PurePosixPath(decode(requested)).parts[1]
        return AreaFiles(AccountArea([Path("/")], top)).read(requested, max_bytes)

    def display(self, requested: str) -> str:
        return shown(requested)


HOST_FILES = HostFiles()

LOOPBACK = HttpOptions(FetchPolicy.parse("127.0.0.1"))
"""Test model servers are on loopback, which load_model refuses unless allowed (tests/security/test_ssrf.py)."""


def load_model(source: str, *args: Any, **kwargs: Any) -> ModelData:
    """`openrr.render.model_loader.load_model` for tests about parsing models: local paths read through the same
    LocalFiles code as a session's, loopback model servers allowed."""
    return load_in_session(source, *args, **{"local_files": HOST_FILES, "http": LOOPBACK, **kwargs})
