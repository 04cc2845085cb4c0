"""The control plane's half of a render server's file broker: it opens local files of the session's account for
a render server that may not open them itself.

Render servers run as an unprivileged user that cannot read the local storage roots (nor the data directory). A
model a tenant names by local path is asked for over a Unix socket pair made at spawn; the control plane checks the
path against the area of the account the server CURRENTLY serves (storage/account_area.py: after decoding and
symlinks, inside `<root>/<accountId>/`) and hands back an open, read-only descriptor (SCM_RIGHTS) or the area's
uniform refusal. The render server never learns more of the host than the bytes of files it may read anyway.

One message per request and per answer (SOCK_SEQPACKET): the request is the path as the client gave it (UTF-8);
the answer is b"ok" with one descriptor, or b"error:" and a message for the client.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path

from openrr.storage.account_area import AccountArea, AreaRefused

logger = logging.getLogger(__name__)
MAX_REQUEST = 16 * 1024
OK = b"ok"
ERROR = b"error:"
DISABLED = "Local files cannot be loaded on this service (the operator turned local models off)."


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """(control plane's end, render server's end); the render server's end is inheritable."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.set_inheritable(True)
    return ours, theirs


class FileBroker:
    """Answers one render server's requests on a daemon thread, until the server closes its end."""

    def __init__(self, sock: socket.socket, roots: tuple[Path, ...], enabled: bool, host_id: str) -> None:
        self._sock = sock
        self._roots = roots
        self._enabled = enabled
        self.account_id: str | None = None
        """The account whose area the server may read: set at spawn or when a warm server is assigned."""
        self._thread = threading.Thread(target=self._serve, name=f"file-broker-{host_id}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def _serve(self) -> None:
        while True:
            try:
                request = self._sock.recv(MAX_REQUEST)
            except OSError:
                return
            if not request:
                return  # the render server exited (or closed its end)
            fd: int | None = None
            try:
                fd = self._open(request.decode("utf-8", errors="replace"))
                socket.send_fds(self._sock, [OK], [fd])
            except _Refused as e:
                self._send(ERROR + str(e).encode())
            except OSError:
                return  # the render server went away mid-answer
            finally:
                if fd is not None:
                    os.close(fd)

    def _send(self, message: bytes) -> None:
        with contextlib.suppress(OSError):
            self._sock.send(message[:MAX_REQUEST])

    def _open(self, requested: str) -> int:
        account = self.account_id
        if not self._enabled:
            raise _Refused(DISABLED)
        if not account:
            raise _Refused("This render server serves no session yet.")
        try:
            return AccountArea(list(self._roots), account).open(requested)
        except AreaRefused as e:
            raise _Refused(str(e)) from None
        except Exception:
            # Whatever else went wrong stays in the control plane's log: its text might name host paths.
            logger.exception("file broker: could not open a local file for account %s", account)
            raise _Refused("The local file could not be opened.") from None


class _Refused(Exception):
    pass
