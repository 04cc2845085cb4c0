"""`openrr account link-storage | unlink-storage | storage-links`: linked storage from the command line.

Keys come in by flag or connection string and go into the store encrypted; no command prints them back.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from openrr.accounts.service import AccountNotFound, AccountService
from openrr.accounts.storage_links import StorageLinks
from openrr.cli.settings import add_data_dir
from openrr.protocol.storage_uri import parse_connection_string
from openrr.store.db import open_database
from openrr.store.secretbox import SecretBox

if TYPE_CHECKING:
    from openrr.config import Settings

ACTIONS = ("link-storage", "unlink-storage", "storage-links")


def add_parsers(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    link = actions.add_parser(
        "link-storage",
        help="let the account's conversions use a blob storage account without SAS tokens",
        description="Store a storage account's key for an openrr account (encrypted at rest, never returned). "
        "Conversions of that account whose container has no SAS token then use it, as ARR's linked storage did.",
    )
    link.add_argument("account_id")
    link.add_argument(
        "--connection-string", help="an Azure Storage connection string with AccountName and AccountKey ('-': stdin)"
    )
    link.add_argument("--account-name", help="storage account name")
    link.add_argument("--account-key", help="storage account key ('-': read it from stdin, out of sight of ps)")
    link.add_argument("--blob-endpoint", help="default: https://<account-name>.blob.core.windows.net")
    unlink = actions.add_parser("unlink-storage", help="forget a linked storage account")
    unlink.add_argument("account_id")
    unlink.add_argument("storage", help="storage account name or blob endpoint")
    listing = actions.add_parser("storage-links", help="list an account's linked storage accounts (never their keys)")
    listing.add_argument("account_id")
    for p in (link, unlink, listing):
        add_data_dir(p)
        p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace, settings: Settings) -> int:
    db = open_database(settings)
    links = StorageLinks(db, SecretBox.from_settings(settings.secrets_key, settings.secrets_key_path))
    try:
        AccountService(db).get(args.account_id)
        if args.action == "link-storage":
            for name in ("connection_string", "account_key"):
                if getattr(args, name) == "-":
                    setattr(args, name, sys.stdin.readline().strip())
            if args.connection_string:
                name, key, endpoint = parse_connection_string(args.connection_string)
                endpoint = args.blob_endpoint or endpoint
            elif args.account_name and args.account_key:
                name, key, endpoint = args.account_name, args.account_key, args.blob_endpoint
            else:
                return _fail("give --connection-string, or --account-name and --account-key")
            made = links.link(args.account_id, name, key, endpoint)
            _print(args, [{"storageAccount": made.storage_account, "blobEndpoint": made.blob_endpoint}])
        elif args.action == "unlink-storage":
            if not links.unlink(args.account_id, args.storage):
                return _fail(f"no storage account '{args.storage}' is linked to {args.account_id}")
            _print(args, [{"unlinked": args.storage}])
        else:
            rows = [
                {
                    "storageAccount": s.storage_account,
                    "blobEndpoint": s.blob_endpoint,
                    "linkedAt": s.created_at.isoformat(),
                }
                for s in links.list(args.account_id)
            ]
            _print(args, rows)
    except AccountNotFound:
        return _fail(f"no account {args.account_id}")
    except ValueError as e:
        return _fail(str(e))
    finally:
        db.dispose()
    return 0


def _fail(message: str) -> int:
    print(f"openrr: {message}", file=sys.stderr)
    return 1


def _print(args: argparse.Namespace, rows: list[dict[str, str]]) -> None:
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print("  ".join(str(v) for v in row.values()))
