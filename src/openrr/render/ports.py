"""Listening sockets in ARR's port range (handshake and inspector ports were 49152–65534)."""

from __future__ import annotations

import random
import socket

PORT_RANGE = (49152, 65534)


def bind_in_range(host: str, attempts: int = 200) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for _ in range(attempts):
        port = random.randint(*PORT_RANGE)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Inherited by accepted connections: a frame must leave at once, not wait (Nagle) for the client to
        # acknowledge the small result message sent before it, which a delayed ACK holds back for milliseconds.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            last = e
            continue
        sock.listen(128)
        sock.set_inheritable(False)
        return sock
    raise OSError(f"no free port in {PORT_RANGE} on {host}: {last}")
