"""The files a model references (glTF buffers and images, OBJ .mtl and textures): openrr's own containment.

A reference is joined to the model's directory and must stay inside it, as written and decoded once, whichever
trimesh is installed. `DirectoryResolver` applies the rule to a model file on disk (the converter's input); the render
server's resolvers (render/model_loader.py) apply it to a tenant's area and to URLs.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from trimesh.resolvers import Resolver

from openrr.model.mesh import ModelLoadError
from openrr.model.texture_guard import fail_parse, remember_name
from openrr.util.paths import opened_path, shown


class ReferenceRefused(ModelLoadError):
    """A model referenced a file outside its own directory (or, locally, outside its account's area)."""


class Budget:
    """What is left of `max_bytes` for a model and everything it references."""

    def __init__(self, max_bytes: int) -> None:
        self.remaining = max_bytes

    def took(self, data: bytes) -> bytes:
        self.remaining = max(0, self.remaining - len(data))
        return data


def inside_directory(path: str, directory: str) -> bool:
    """Lexically: `path` (normalised) lies below `directory` ('' or '.' for a relative model path)."""
    if directory in ("", "."):
        return not (path.startswith("/") or path in (".", "..") or path.startswith("../"))
    return path.startswith(directory.rstrip("/") + "/")


def reference_candidates(key: str, directory: str, display: str) -> list[str]:
    """Paths to try for a reference, joined to the model's directory: as written and decoded once (glTF URIs are
    percent-encoded); for an absolute path from another machine, its file name beside the model (as trimesh's own
    resolver does). ReferenceRefused if a relative spelling climbs out of the directory (`..`, `%2e%2e`)."""
    found: list[str] = []
    for spelling in (key.strip(), unquote(key.strip())):
        joined = posixpath.normpath(posixpath.join(directory, spelling.replace("\\", "/")))
        if inside_directory(joined, directory):
            found.append(joined)
        elif not spelling.startswith("/"):
            raise ReferenceRefused(f"{display} references '{shown(key)}', which lies outside the model's own directory")
        else:
            found.append(posixpath.join(directory, posixpath.basename(spelling)))
    return [c for i, c in enumerate(found) if c not in found[:i] and inside_directory(c, directory)]


class ReadOnlyResolver(Resolver):
    """A trimesh resolver that only reads: what every resolver of a model's references is, here and in render/."""

    def write(self, name: str, data: Any) -> None:
        raise NotImplementedError("models are read-only here")

    def namespaced(self, namespace: str) -> Resolver:
        raise NotImplementedError("namespaces are not used here")

    def keys(self) -> Iterator[str]:
        return iter(())


class DirectoryResolver(ReadOnlyResolver):
    """References of a model file on disk (the converter's input), kept inside the model's own directory after
    decoding, `..` and symlinks by openrr itself rather than by whichever trimesh is installed."""

    def __init__(self, source: Path, display: str, max_bytes: int = 2 * 1024**3) -> None:
        # References are joined to the directory as given and opened by that path; `directory` (resolved) is
        # what they must stay in. A conversion worker names its directory /proc/self/cwd/…: the resolved path lies
        # under the data directory, which it cannot reach.
        self.base = os.path.dirname(os.path.abspath(source))
        self.directory = os.path.realpath(self.base)
        self.display = display
        self.budget = Budget(max_bytes)

    def get(self, key: str) -> bytes:
        inside = False
        for candidate in reference_candidates(key, self.base, self.display):
            real = os.path.realpath(candidate)
            if not inside_directory(real, self.directory):
                continue  # a symlink leading out
            inside = True
            try:
                # The candidate, not its resolved path (see __init__); what was opened is checked by its
                # descriptor, so a link swapped in meanwhile cannot lead out.
                fd = os.open(candidate, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode) or not inside_directory(opened_path(fd), self.directory):
                    continue
                data = f.read(self.budget.remaining + 1)
            if len(data) > self.budget.remaining:
                message = f"{self.display} and the files it references are over the size limit"
                fail_parse(message)
                raise ModelLoadError(message)
            remember_name(data, key)
            return self.budget.took(data)
        if not inside:
            raise ReferenceRefused(f"{self.display} references '{shown(key)}', which lies outside its own directory")
        raise FileNotFoundError(key)
