"""A local directory standing in for a blob container, for users without blob storage.

Blob names map to paths under the directory; nothing may resolve outside it, and the directory itself
must lie under one of the service's local storage roots.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from openrr.storage.container import BlobEntry
from openrr.storage.errors import StorageError


def allowed_root(path: Path, roots: list[Path]) -> Path | None:
    resolved = path.resolve()
    for root in roots:
        if resolved.is_relative_to(root.resolve()):
            return root
    return None


class LocalContainer:
    def __init__(self, path: Path, roots: list[Path]) -> None:
        if allowed_root(path, roots) is None:
            shown = ", ".join(str(r) for r in roots) or "(none configured)"
            raise StorageError("denied", f"{path} is not under a local storage root of this service ({shown}).")
        self.root = path.resolve()
        if not self.root.is_dir():
            raise StorageError("not_found", f"the container directory {path} does not exist.")

    @property
    def display(self) -> str:
        return self.root.as_uri()

    def _path(self, name: str) -> Path:
        target = (self.root / name).resolve()
        if not target.is_relative_to(self.root) or target == self.root:
            raise StorageError("denied", f"the blob name '{name}' leads outside the container directory {self.root}.")
        return target

    def list(self, prefix: str) -> Iterator[BlobEntry]:
        # Prefixes are plain string prefixes, as in blob storage: 'house' matches 'house/…' and 'house.fbx'.
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for fname in sorted(filenames):
                full = Path(dirpath) / fname
                name = full.relative_to(self.root).as_posix()
                if name.startswith(prefix):
                    yield BlobEntry(name, full.stat().st_size)

    def download(self, name: str, dest: Path) -> None:
        source = self._path(name)
        try:
            shutil.copyfile(source, dest)
        except FileNotFoundError:
            raise StorageError("not_found", f"{source} does not exist.") from None
        except PermissionError:
            raise StorageError("denied", f"permission denied reading {source}.") from None

    def upload(self, name: str, src: Path) -> None:
        target = self._path(name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Written beside and renamed: a reader never sees half an asset.
            partial = target.with_name(f".{target.name}.partial")
            shutil.copyfile(src, partial)
            partial.replace(target)
        except PermissionError:
            raise StorageError("denied", f"permission denied writing {target}.") from None
        except OSError as e:
            raise StorageError("failed", f"cannot write {target}: {e.strerror or e}.") from None

    def url_of(self, name: str) -> str:
        return (self.root / name).as_uri()

    def close(self) -> None:
        pass
