"""The `openrr` command: serve, account, session, convert, render-server."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openrr.config import Settings


def _size_map(text: str, *, bytes_: bool = False) -> dict[str, int]:
    """`Standard=2,Premium=1` -> {"Standard": 2, "Premium": 1}."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected SIZE=N, got {part!r}")
        canonical = {"standard": "Standard", "premium": "Premium"}.get(name.strip().lower())
        if canonical is None:
            raise argparse.ArgumentTypeError(f"unknown size {name!r} (Standard or Premium)")
        out[canonical] = _bytes(value) if bytes_ else int(value)
    return out


def _size_bytes_map(text: str) -> dict[str, int]:
    """`Standard=8G,Premium=16G` -> bytes per size (suffixes K, M, G: powers of 1024)."""
    return _size_map(text, bytes_=True)


def _bytes(text: str) -> int:
    text = text.strip()
    scale = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(text[-1:].lower(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def settings_from(args: argparse.Namespace) -> Settings:
    from openrr.config import Settings

    overrides: dict[str, Any] = {}
    for name in (
        "data_dir",
        "host",
        "port",
        "database_url",
        "render_hostname",
        "rate_limit_per_s",
        "rate_limit_burst",
        "reconcile_interval_s",
        "stop_grace_s",
        "standard_primitive_limit",
        "conversion_workers",
        "conversion_lease_s",
        "tls_cert",
        "tls_key",
        "public_url",
        "handshake_timeout_s",
        "keep_alive_timeout_s",
        "max_connections",
        "child_user",
        "texture_max_dimension",
        "texture_max_pixels",
        "model_max_bytes",
        "model_max_compression_ratio",
    ):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "no_tls", False):
        overrides["tls"] = False
    if getattr(args, "local_storage_root", None):
        overrides["local_storage_roots"] = args.local_storage_root
    if getattr(args, "local_models", None) is not None:
        overrides["local_models"] = args.local_models == "on"
    if getattr(args, "fetch_allow", None):
        overrides["fetch_allow"] = ",".join(args.fetch_allow)
    defaults = Settings(**overrides)
    for name in ("warm_pool", "capacity", "render_memory_limit"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = {**getattr(defaults, name), **value}
    return Settings(**overrides)


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="data directory (env OPENRR_DATA_DIR)")
    p.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data directory)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openrr", description="Open Remote Rendering")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service (HTTPS, SQLite, local render servers)")
    _add_data_dir(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8443)")
    serve.add_argument("--render-hostname", help="host name clients use to reach render servers")
    serve.add_argument("--no-tls", action="store_true", help="plain HTTP (the official SDK refuses it)")
    serve.add_argument(
        "--tls-cert",
        type=Path,
        help="your own certificate chain (PEM) for the service; render servers keep leaves of the local CA",
    )
    serve.add_argument("--tls-key", type=Path, help="the private key (PEM) of --tls-cert")
    serve.add_argument("--warm-pool", type=_size_map, help="warm render servers per size, e.g. Standard=1")
    serve.add_argument("--capacity", type=_size_map, help="most live sessions per size, e.g. Standard=4")
    serve.add_argument("--rate-limit-per-s", type=float, help="requests per second per account (0: off)")
    serve.add_argument("--rate-limit-burst", type=int, help="burst size of the per-account limit")
    serve.add_argument("--reconcile-interval-s", type=float, help=argparse.SUPPRESS)
    serve.add_argument("--stop-grace-s", type=float, help="seconds between SIGTERM and SIGKILL")
    serve.add_argument(
        "--standard-primitive-limit", type=int, help="primitives a Standard session renders (ARR's 20 million)"
    )
    serve.add_argument("--conversion-workers", type=int, help="conversions run at once (0: none in this process)")
    serve.add_argument(
        "--local-storage-root",
        type=Path,
        action="append",
        help="directory under which file:// containers may lie, each account's in <root>/<accountId>/ "
        "(repeatable; default DATA_DIR/containers)",
    )
    serve.add_argument(
        "--local-models",
        choices=["on", "off"],
        help="whether sessions may load models by local path or file:// URL, from their account's area under the "
        "local storage roots (default on; env OPENRR_LOCAL_MODELS)",
    )
    serve.add_argument("--texture-max-dimension", type=int, help="texture width or height in pixels (default 16384)")
    serve.add_argument("--texture-max-pixels", type=int, help="texture width x height (default 67108864)")
    serve.add_argument(
        "--model-max-bytes", type=int, help="bytes fetched or decoded for one model, decompressed (default 2 GiB)"
    )
    serve.add_argument(
        "--model-max-compression-ratio", type=float, help="decoded per transferred byte of a compressed download (200)"
    )
    serve.add_argument(
        "--render-memory-limit",
        type=_size_bytes_map,
        help="memory (RLIMIT_DATA) of one render server per size, e.g. Standard=8G,Premium=16G",
    )
    serve.add_argument(
        "--fetch-allow",
        action="append",
        metavar="HOST[:PORT]|CIDR,...",
        help="non-public addresses render servers and conversions may fetch from, e.g. 127.0.0.1:10000 for Azurite "
        "(repeatable or comma-separated; env OPENRR_FETCH_ALLOW; default: public addresses only)",
    )
    serve.add_argument(
        "--child-user",
        help="user render servers and conversion workers run as when the service runs as root (default nobody; "
        "env OPENRR_CHILD_USER)",
    )
    serve.add_argument("--conversion-lease-s", type=float, help=argparse.SUPPRESS)
    serve.add_argument(
        "--public-url", help="base URL clients reach the service at, for links in responses (default: the endpoint)"
    )
    serve.add_argument(
        "--handshake-timeout-s", type=float, help="drop connections without TLS or a request after this (default 10)"
    )
    serve.add_argument("--keep-alive-timeout-s", type=float, help="idle seconds a kept-alive connection stays open")
    serve.add_argument("--max-connections", type=int, help="connections served at once; past it: 503 (default 1000)")
    serve.add_argument("--log-level", default="info")

    account = sub.add_parser("account", help="manage accounts")
    asub = account.add_subparsers(dest="action", required=True)
    for name, helptext in (
        ("create", "create an account (prints its keys once)"),
        ("list", "list accounts"),
        ("show", "show one account"),
        ("rotate-key", "replace a key; the old one stops working"),
        ("delete", "delete an account and its sessions"),
    ):
        p = asub.add_parser(name, help=helptext)
        _add_data_dir(p)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name in ("show", "rotate-key", "delete"):
            p.add_argument("account_id")
        if name == "create":
            p.add_argument("--domain", default="localhost", help="account domain reported to clients")
        if name == "rotate-key":
            p.add_argument("--key", choices=["primary", "secondary"], default="primary")
    from openrr.cli import links as link_cli

    link_cli.add_parsers(asub, _add_data_dir)
    from openrr.cli import quota as quota_cli

    quota_cli.add_parser(asub, _add_data_dir)

    from openrr.cli import session as session_cli

    session_cli.add_parser(sub)

    from openrr.cli import convert as convert_cli

    convert_cli.add_parser(sub)

    # Listed for --help only: main() hands `openrr render-server ...` to the render server's own parser before this
    # one is built, so that the other commands never import the render stack (GL, OpenCV, aiortc: ~1.5 s).
    sub.add_parser("render-server", help="run one render server (started by the service)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["render-server"]:
        # Render servers start often and must start fast: skip the rest of the CLI's imports.
        from openrr.render.server import add_arguments, run

        rs = argparse.ArgumentParser(prog="openrr render-server")
        add_arguments(rs)
        return run(rs.parse_args(argv[1:]))
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from openrr.serve import serve

        return serve(settings_from(args), args.log_level)
    if args.command == "account":
        return _account(args)
    if args.command == "session":
        from openrr.cli import session as session_cli

        return session_cli.run(args)
    if args.command == "convert":
        from openrr.cli import convert as convert_cli

        return convert_cli.run(args)
    return 2


def _account(args: argparse.Namespace) -> int:
    from openrr.accounts.service import AccountNotFound, AccountService
    from openrr.cli import links as link_cli
    from openrr.cli import quota as quota_cli
    from openrr.store.db import open_database

    if args.action in link_cli.ACTIONS:
        return link_cli.run(args)

    logging.basicConfig(level=logging.WARNING)
    settings = settings_from(args)
    db = open_database(settings)
    accounts = AccountService(db)
    try:
        if args.action == "create":
            made = accounts.create(domain=args.domain)
            _emit(
                args,
                {
                    "accountId": made.account.account_id,
                    "primaryKey": made.primary_key,
                    "secondaryKey": made.secondary_key,
                    "accountDomain": made.account.domain,
                },
            )
        elif args.action == "list":
            rows = [_account_doc(a) for a in accounts.list()]
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                for r in rows:
                    print(f"{r['accountId']}  {r['accountDomain']}  created {r['createdAt']}")
        elif args.action in ("show", quota_cli.ACTION):
            account = accounts.get(args.account_id)
            if args.action == quota_cli.ACTION:
                quota_cli.set_quota(db, account.account_id, args)
            doc = _account_doc(account)
            doc["sessionQuotas"] = quota_cli.quota_doc(db, account.account_id, settings.capacity, args.json)
            _emit(args, doc)
        elif args.action == "rotate-key":
            key = accounts.rotate_key(args.account_id, args.key)
            doc = _account_doc(accounts.get(args.account_id))
            doc[f"{args.key}Key"] = key
            _emit(args, doc)
        elif args.action == "delete":
            accounts.delete(args.account_id)
            _emit(args, {"accountId": args.account_id, "deleted": True})
    except AccountNotFound:
        print(f"openrr: no account {args.account_id}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    return 0


def _account_doc(account: Any) -> dict[str, Any]:
    return {
        "accountId": account.account_id,
        "accountDomain": account.domain,
        "createdAt": account.created_at.isoformat(),
    }


def _emit(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        width = max(len(k) for k in doc)
        for k, v in doc.items():
            print(f"{k:<{width}}  {v}")
