"""The render server's half of the file broker (hosting/file_broker.py): local files of the session's account,
opened by the control plane and handed over as descriptors, since this process may not open them itself."""

from __future__ import annotations

import os
import socket
import threading

from openrr.storage.area_files import LocalFileRefused
from openrr.util.paths import shown

MAX_REQUEST = 16 * 1024


class BrokeredFiles:
    """storage.area_files.LocalFiles over the broker socket inherited as descriptor `fd`."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)
        self._lock = threading.Lock()  # one request at a time: answers carry no request id

    def read(self, requested: str, max_bytes: int) -> bytes:
        fd = self._open(requested)
        with os.fdopen(fd, "rb") as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise LocalFileRefused(f"'{shown(requested)}' is larger than this model's limit ({max_bytes:,} bytes).")
        return data

    def display(self, requested: str) -> str:
        # The client's own words: they say nothing about the host it did not know already.
        return shown(requested)

    def _open(self, requested: str) -> int:
        request = requested.encode("utf-8", errors="replace")
        if len(request) > MAX_REQUEST:
            raise LocalFileRefused("The path is too long.")
        with self._lock:
            try:
                self._sock.send(request)
                message, fds, _flags, _addr = socket.recv_fds(self._sock, MAX_REQUEST, 1)
            except OSError as e:
                raise LocalFileRefused(f"Local files are unavailable: the control plane's broker is gone ({e}).") from e
        if message == b"ok" and fds:
            return fds[0]
        for fd in fds:
            os.close(fd)
        if not message:
            raise LocalFileRefused("Local files are unavailable: the control plane's broker is gone.")
        raise LocalFileRefused(message.removeprefix(b"error:").decode("utf-8", errors="replace"))
