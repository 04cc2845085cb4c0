"""Listening sockets in ARR's port range (handshake and inspector ports were 49152–65534)."""

from __future__ import annotations

import random
import socket

PORT_RANGE = (49152, 65534)


def bind_in_range(host: str, attempts: int = 200) -> socket.socket:
    last: OSError | None = None
    for _ in range(attempts):
        try:
            return bind_exact(host, random.randint(*PORT_RANGE))
        except OSError as e:
            last = e
    raise OSError(f"no free port in {PORT_RANGE} on {host}: {last}")


def bind_exact(host: str, port: int) -> socket.socket:
    """A listening socket on exactly `port` (OSError if it is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by accepted connections: a frame must leave at once, not wait (Nagle) for the client to
    # acknowledge the small result message sent before it, which a delayed ACK holds back for milliseconds.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(False)
    return sock
