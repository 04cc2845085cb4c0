"""Files that appear whole or not at all: written under a temporary name beside the target, then renamed.

The one atomic write (stdlib only: the render server's contract, render/control.py, uses it too). The temporary
name is built from `path` itself, so a relative `path` stays relative (a render server reaches its home only as
its working directory).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(path: Path, mode: int = 0o600, durable: bool = True) -> Iterator[BinaryIO]:
    """A binary file that becomes `path` (with exactly `mode`) only when the block ends without an exception.

    `durable`: on disk before the rename (fsync), so that a crash leaves the old file or the whole new one;
    files that mean nothing after a restart (ports, host records) skip it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory: a rename within one file system is atomic; the leading dot hides it from listings.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # os.open's mode is masked by the umask
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            if durable:
                os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    with atomic_file(path, mode, durable) as out:
        out.write(data)
