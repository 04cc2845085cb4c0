"""`openrr session ...` (placeholder replaced by the session CLI)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    sub.add_parser("session", help="manage rendering sessions")


def run(args: argparse.Namespace) -> int:
    return 2
