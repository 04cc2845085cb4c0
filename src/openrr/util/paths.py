"""Naming and locating files safely: how a path a tenant wrote is quoted back, and where an open descriptor points.

Shared by storage/ (a tenant's local area) and model/ (the files a model references), which may not import each
other.
"""

from __future__ import annotations

import os

_MAX_SHOWN = 200


def shown(requested: str) -> str:
    """The tenant's own words, shortened: quoted back in refusals, never anything resolved from them."""
    text = requested if len(requested) <= _MAX_SHOWN else requested[:_MAX_SHOWN] + "…"
    return text.replace("\n", " ").replace("\r", " ")


def opened_path(fd: int) -> str:
    """Where an open descriptor really points (the kernel's view, after every symlink and rename)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        # No /proc: nothing better than an empty answer, which lies inside no area.
        return ""
