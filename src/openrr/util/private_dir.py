"""The data directory is the owner's alone: 0700 directories and 0600 files, whatever the umask.

It holds the database (account key digests, sealed secrets), the secrets key, the STS and TLS keys and the
tenants' files: any other local user who could read it could mint tokens or read other tenants' data.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077


def private_umask() -> None:
    """Everything this process creates from now on is owner-only (SQLite's -wal/-shm files included, which
    SQLite creates with the database file's mode)."""
    os.umask(PRIVATE_UMASK)


def ensure_private_dir(path: Path) -> list[Path]:
    """Create `path` (0700) or make an existing one owner-only: every directory under it 0700 and every file
    without group or other permissions (0600 for plain files). Symbolic links are neither followed nor changed.
    Returns the entries whose modes were tightened, for the log."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    tightened: list[Path] = []
    if _tighten(path, 0o700):
        tightened.append(path)
    for root, dirs, files in os.walk(path, followlinks=False):
        base = Path(root)
        for name in dirs:
            if _tighten(base / name, 0o700):
                tightened.append(base / name)
        for name in files:
            if _tighten(base / name, None):
                tightened.append(base / name)
    return tightened


def create_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist (so that a library opening it later, such as
    SQLite, never creates it with the umask's mode); make an existing one 0600."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _tighten(path, None)
    else:
        os.close(fd)


def _tighten(path: Path, directory_mode: int | None) -> bool:
    """Give `path` (a directory: exactly `directory_mode`; a regular file: its owner's bits only) and say whether
    that changed anything. Other kinds of entries (links, sockets, fifos) are left alone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:  # removed meanwhile
        return False
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode) and directory_mode is not None:
        wanted = directory_mode
    elif stat.S_ISREG(st.st_mode):
        wanted = mode & 0o700
    else:
        return False
    if mode == wanted:
        return False
    os.chmod(path, wanted)
    return True
