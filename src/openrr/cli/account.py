"""`openrr account create|list|show|rotate-key|delete`, and the account's storage links and quotas.

Every action opens the store of the running service (cli/running.py says which, on stderr) or the one the flags name.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from openrr.accounts.service import AccountNotFound, AccountService
from openrr.cli import links, quota, running
from openrr.cli.settings import add_data_dir
from openrr.store.db import open_database


def add_arguments(account: argparse.ArgumentParser) -> None:
    actions = account.add_subparsers(dest="action", required=True)
    for name, helptext in (
        ("create", "create an account (prints its keys once)"),
        ("list", "list accounts"),
        ("show", "show one account"),
        ("rotate-key", "replace a key; the old one stops working"),
        ("delete", "delete an account and its sessions"),
    ):
        p = actions.add_parser(name, help=helptext)
        add_data_dir(p)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name in ("show", "rotate-key", "delete"):
            p.add_argument("account_id")
        if name == "create":
            p.add_argument("--domain", default="localhost", help="account domain reported to clients")
        if name == "rotate-key":
            p.add_argument("--key", choices=["primary", "secondary"], default="primary")
    links.add_parsers(actions)
    quota.add_parser(actions)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    settings = running.admin_settings(args)
    if settings is None:
        return 2
    if args.action in links.ACTIONS:
        return links.run(args, settings)
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
        elif args.action in ("show", quota.ACTION):
            account = accounts.get(args.account_id)
            if args.action == quota.ACTION:
                quota.set_quota(db, account.account_id, args)
            doc = _account_doc(account)
            doc["sessionQuotas"] = quota.quota_doc(db, account.account_id, settings.capacity, args.json)
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
