"""A local directory standing in for a blob container, for users without blob storage.

The directory must lie inside one of the given roots; for a conversion those are the requesting account's
own directories, `<local storage root>/<accountId>` (storage/account_area.py). Every blob name is checked again
when it is read or written, after `..` and symlinks, and the file is opened without following a last-component
symlink and its descriptor's real path checked, so that nothing leaves the container between check and use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from openrr.storage.account_area import inside
from openrr.storage.container import BlobEntry
from openrr.storage.errors import StorageError
from openrr.util.paths import opened_path

_READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
_DIR = os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY | os.O_NOFOLLOW


def allowed_root(path: Path, roots: list[Path]) -> Path | None:
    """The root `path` lies in once resolved (after `..` and symlinks), or None."""
    resolved = os.path.realpath(path)
    for root in roots:
        if inside(resolved, os.path.realpath(root)):
            return root
    return None


class LocalContainer:
    def __init__(self, path: Path, roots: list[Path]) -> None:
        # One message whether the directory lies outside the roots or does not exist: a tenant learns nothing
        # about directories that are not its own.
        if allowed_root(path, roots) is None or not os.path.isdir(os.path.realpath(path)):
            raise StorageError("not_found", f"{path} is not a directory in this account's local storage.")
        self.root = Path(os.path.realpath(path))
        self.given = path

    @property
    def display(self) -> str:
        return self.given.as_uri() if self.given.is_absolute() else self.root.as_uri()

    def _refused(self, name: str) -> StorageError:
        return StorageError("denied", f"the blob name '{name}' leads outside the container directory {self.given}.")

    def _path(self, name: str) -> Path:
        target = os.path.realpath(self.root / name)
        if target == str(self.root) or not inside(target, str(self.root)):
            raise self._refused(name)
        return Path(target)

    def _check_fd(self, fd: int, name: str) -> None:
        """The opened file really lies in the container (a directory swapped for a symlink after `_path`)."""
        if not inside(opened_path(fd), str(self.root)):
            os.close(fd)
            raise self._refused(name)

    def list(self, prefix: str) -> Iterator[BlobEntry]:
        # Prefixes are plain string prefixes, as in blob storage: 'house' matches 'house/…' and 'house.fbx'.
        # Only regular files: a symlink is never listed (os.walk does not enter linked directories either).
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for fname in sorted(filenames):
                full = Path(dirpath) / fname
                name = full.relative_to(self.root).as_posix()
                if not name.startswith(prefix):
                    continue
                try:
                    st = full.lstat()
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield BlobEntry(name, st.st_size)

    def download(self, name: str, dest: Path) -> None:
        source = self._path(name)
        try:
            fd = os.open(source, _READ)
        except FileNotFoundError:
            raise StorageError("not_found", f"{name} does not exist in {self.given}.") from None
        except PermissionError:
            raise StorageError("denied", f"permission denied reading {name} in {self.given}.") from None
        except OSError:
            raise self._refused(name) from None
        self._check_fd(fd, name)
        with os.fdopen(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StorageError("not_found", f"{name} is not a file in {self.given}.")
            os.set_blocking(fd, True)
            with open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)

    def upload(self, name: str, src: Path) -> None:
        target = self._path(name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # The directory is pinned by a descriptor checked to lie in the container; the file is created and
            # renamed relative to it, so a symlink swapped in anywhere on the way is never followed.
            dir_fd = os.open(target.parent, _DIR)
        except PermissionError:
            raise StorageError("denied", f"permission denied writing {name} in {self.given}.") from None
        except OSError as e:
            raise StorageError("failed", f"cannot write {name} in {self.given}: {e.strerror or e}.") from None
        self._check_fd(dir_fd, name)
        try:
            # Written beside and renamed: a reader never sees half an asset.
            partial = f".{target.name}.partial"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial, dir_fd=dir_fd)
            fd = os.open(
                partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
            )
            with os.fdopen(fd, "wb") as out, open(src, "rb") as data:
                shutil.copyfileobj(data, out, 1 << 20)
            os.replace(partial, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except PermissionError:
            raise StorageError("denied", f"permission denied writing {name} in {self.given}.") from None
        except OSError as e:
            raise StorageError("failed", f"cannot write {name} in {self.given}: {e.strerror or e}.") from None
        finally:
            os.close(dir_fd)

    def close(self) -> None:
        pass
