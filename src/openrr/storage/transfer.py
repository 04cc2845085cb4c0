"""Copying a blob prefix down into a directory, and a directory up under a prefix."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from openrr.storage.container import Container
from openrr.storage.errors import StorageError

Progress = Callable[[float], None]


def safe_relative(name: str) -> PurePosixPath | None:
    """`name` as a path that stays inside a directory, or None (absolute, '..', or empty parts)."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or any(p in ("..", ".", "") for p in name.split("/")):
        return None
    return path


def download_prefix(container: Container, prefix: str, dest: Path, max_bytes: int, progress: Progress) -> list[str]:
    """Every blob under `prefix`, written to `dest` under its name less the prefix. Returns those names."""
    entries = [e for e in container.list(prefix) if not e.name.endswith("/")]
    total = sum(e.size for e in entries)
    if total > max_bytes:
        raise StorageError(
            "failed",
            f"the {len(entries)} blobs under '{prefix}' in {container.display} hold {total} bytes, "
            f"more than this service converts ({max_bytes} bytes).",
        )
    names: list[str] = []
    done = 0
    for entry in entries:
        relative = safe_relative(entry.name[len(prefix) :])
        if relative is None:
            continue  # cannot be a file in the input directory ('a/../b'); the model cannot refer to it either
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        container.download(entry.name, target)
        names.append(relative.as_posix())
        done += entry.size
        progress(done / total if total else 1.0)
    return names


def upload_tree(
    container: Container, prefix: str, src: Path, progress: Progress, *, beneath: bool = False
) -> list[str]:
    """Every regular file under `src`, written as blobs `prefix + relative path`. Returns the blob names.

    Symlinks are never followed, so nothing outside `src` is stored. `beneath`: the tree was written by a less
    trusted process (a conversion worker) that may still be changing it; each file is then opened component by
    component without following any link, and the container copies from that open file, so a symlink swapped in
    between the listing and the copy cannot make this process store a file the tree's writer could not read.
    """
    # The result file last: once it is there, everything it describes is there too.
    files = sorted(regular_files(src), key=lambda f: (f[0].endswith(".result.json"), f[0]))
    total = sum(size for _, size in files)
    names: list[str] = []
    done = 0
    for relative, size in files:
        name = prefix + relative
        if beneath:
            fd = open_beneath(src, relative)
            try:
                container.upload(name, Path(f"/proc/self/fd/{fd}"))
            finally:
                os.close(fd)
        else:
            container.upload(name, src / relative)
        names.append(name)
        done += size
        progress(done / total if total else 1.0)
    return names


def regular_files(src: Path) -> list[tuple[str, int]]:
    """(relative POSIX path, size) of every regular file under `src`, without following symlinks."""
    found: list[tuple[str, int]] = []
    if not src.is_dir():
        return found
    for dirpath, _dirnames, filenames, dirfd in os.fwalk(src, follow_symlinks=False):
        base = Path(dirpath).relative_to(src)
        for fname in filenames:
            try:
                st = os.stat(fname, dir_fd=dirfd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append(((base / fname).as_posix(), st.st_size))
    return found


def open_beneath(root: Path, relative: str) -> int:
    """A read descriptor of the regular file `root/relative`, opened without following a link at any component."""
    parts = PurePosixPath(relative).parts
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(root, flags | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            inner = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        # O_NONBLOCK: a FIFO swapped in must not hang the open; a regular file ignores it.
        leaf = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
    except OSError as e:
        raise StorageError("failed", f"cannot read the output '{relative}': {e.strerror or e}.") from None
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(leaf).st_mode):
        os.close(leaf)
        raise StorageError("failed", f"the output '{relative}' is not a regular file.")
    os.set_blocking(leaf, True)
    return leaf
