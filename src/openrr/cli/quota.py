"""`openrr account set-quota`, and the quota line of `openrr account show`.

Parsing imports nothing heavy: every `openrr account` action builds the parser, and only these two need the quotas.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from openrr.cli.settings import add_data_dir

if TYPE_CHECKING:
    from openrr.store.db import Database

ACTION = "set-quota"
_SIZES = {"standard": "Standard", "premium": "Premium"}


def add_parser(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = actions.add_parser(
        ACTION,
        help="set how many live sessions of a size an account may hold",
        description="Set the account's quota of live (Starting or Ready) sessions of one size. Without one, an "
        "account may hold the size's capacity (openrr serve --capacity) minus one, at least 1. It takes effect at "
        "the next create, also while the service runs; it never stops a running session.",
    )
    p.add_argument("account_id")
    p.add_argument("--size", required=True, type=_size, help="Standard or Premium")
    value = p.add_mutually_exclusive_group(required=True)
    value.add_argument("--sessions", type=_count, help="live sessions of that size the account may hold")
    value.add_argument("--reset", action="store_true", help="back to the default (capacity minus one, at least 1)")
    add_data_dir(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _size(text: str) -> str:
    size = _SIZES.get(text.strip().lower())
    if size is None:
        raise argparse.ArgumentTypeError(f"unknown size {text!r} (Standard or Premium)")
    return size


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from e
    if n < 0:
        raise argparse.ArgumentTypeError("the number of sessions cannot be negative")
    return n


def set_quota(db: Database, account_id: str, args: argparse.Namespace) -> None:
    """Store (or with --reset drop) the account's value. Raises quotas.UnknownAccount if there is no such account."""
    from openrr.sessions.quotas import SessionQuotas
    from openrr.sessions.state import SessionSize

    SessionQuotas(db).set(account_id, SessionSize(args.size), None if args.reset else args.sessions)


def quota_doc(db: Database, account_id: str, capacity: dict[str, int], as_json: bool) -> Any:
    """`sessionQuotas` of `openrr account show`: per size, the quota and whether it is the default.

    The default is computed from `capacity` as this command sees it (OPENRR_CAPACITY or the built-in default);
    a service started with another --capacity applies capacity - 1 of its own.
    """
    from openrr.sessions.quotas import SessionQuotas, default_quota
    from openrr.sessions.state import SessionSize

    explicit = SessionQuotas(db).explicit(account_id)
    doc: dict[str, dict[str, Any]] = {}
    for size in SessionSize:
        if size in explicit:
            doc[size.value] = {"sessions": explicit[size], "default": False}
        else:
            doc[size.value] = {"sessions": default_quota(capacity.get(size.value, 0)), "default": True}
    if as_json:
        return doc
    return ", ".join(
        f"{size}={q['sessions']}" + (" (default: capacity - 1)" if q["default"] else "") for size, q in doc.items()
    )
