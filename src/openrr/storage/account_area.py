"""One account's share of the local storage roots: `<root>/<accountId>/…` for every root.

Everything a tenant names on this machine (a file:// container, a local model path) is resolved here:
decoded once, made absolute against the area, resolved through `..` and symlinks, and accepted only if
the result lies inside `<root>/<accountId>` for some root. A refusal says the same thing whether the path
lies outside, does not exist, is a directory or cannot be read, so that no answer tells a tenant what
exists elsewhere on the host.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

from openrr.util.paths import opened_path, shown

# Account ids are UUIDs; anything that could be read as more than one path component is refused outright.
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class AreaRefused(Exception):
    """A path a tenant named is not a usable file (or directory) in its own area; `message` reveals nothing else."""

    def __init__(self, message: str, *, over_limit: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.over_limit = over_limit
        """The file is in the area but larger than the caller's limit (only then is this said)."""


def account_dir(root: Path, account_id: str) -> Path:
    """`<root>/<accountId>`, the root resolved (the account id is checked to be one plain component)."""
    if not _ACCOUNT_ID.match(account_id) or account_id in (".", ".."):
        raise ValueError(f"'{account_id}' is not an account id")
    return Path(os.path.realpath(root)) / account_id


def decode(requested: str) -> str:
    """A file:// URL or a path, as a path: percent-escapes decoded exactly once (so `%2e%2e` is `..`)."""
    text = requested.strip()
    if text[:5].lower() == "file:":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise ValueError("not a local file URL")
        return unquote(parts.path)
    return unquote(text)


def inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


class AccountArea:
    """Where one account's local files live, and the only way openrr turns a tenant's path into a file."""

    def __init__(self, roots: list[Path], account_id: str) -> None:
        self.account_id = account_id
        self.dirs = [account_dir(r, account_id) for r in roots]

    def refusal(self, requested: str) -> AreaRefused:
        return AreaRefused(f"'{shown(requested)}' is not a file in this account's local storage")

    def _candidates(self, requested: str) -> list[str]:
        try:
            path = decode(requested)
        except ValueError:
            return []
        if not path or "\x00" in path:
            return []
        if os.path.isabs(path):
            return [path]
        return [os.path.join(d, path) for d in self.dirs]

    def contains(self, resolved: str) -> bool:
        """Whether an already resolved (realpath) path lies in one of this account's directories."""
        return any(inside(resolved, os.path.realpath(d)) for d in self.dirs)

    def locate(self, requested: str) -> Path | None:
        """The resolved path inside the area, existing or not; None if it leads outside (by any spelling)."""
        for candidate in self._candidates(requested):
            real = os.path.realpath(candidate)
            if self.contains(real):
                return Path(real)
        return None

    def resolve(self, requested: str) -> Path:
        """The regular file a tenant named, resolved; AreaRefused (one message for every reason) otherwise."""
        for candidate in self._candidates(requested):
            real = os.path.realpath(candidate)
            if not self.contains(real):
                continue
            try:
                if stat.S_ISREG(os.stat(real).st_mode):
                    return Path(real)
            except OSError:
                continue
        raise self.refusal(requested)

    def open(self, requested: str) -> int:
        """An O_RDONLY|O_CLOEXEC descriptor of the file, checked again after opening (the caller closes it).

        O_NOFOLLOW refuses a symlink swapped in for the last component after `resolve`; the descriptor's own
        path (/proc/self/fd) catches a directory swapped higher up, so nothing escapes between check and use.
        """
        path = self.resolve(requested)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            raise self.refusal(requested) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or not self.contains(opened_path(fd)):
                raise self.refusal(requested)
            # O_NONBLOCK only kept a FIFO swapped in from blocking the open; regular files ignore it.
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read(self, requested: str, max_bytes: int) -> bytes:
        """The whole file, refused (with the same message) when it is larger than `max_bytes`."""
        fd = self.open(requested)
        with os.fdopen(fd, "rb") as f:
            # Sized by the file, not the limit: a buffer of `max_bytes` would reserve gigabytes of address space.
            size = os.fstat(fd).st_size
            data = b"" if size > max_bytes else f.read(size + 1)
        if size > max_bytes or len(data) > max_bytes:
            raise AreaRefused(f"'{shown(requested)}' is larger than the limit of {max_bytes} bytes", over_limit=True)
        return data
