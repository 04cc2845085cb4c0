"""Opaque skip tokens for keyset paging (creation time, id)."""

from __future__ import annotations

import base64
import datetime as dt
import json

from openrr.http.errors import bad_request


def encode_skiptoken(after: tuple[dt.datetime, str]) -> str:
    raw = json.dumps([after[0].isoformat(), after[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_skiptoken(token: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        when, ident = json.loads(raw)
        return dt.datetime.fromisoformat(when), str(ident)
    except (ValueError, TypeError) as e:
        raise bad_request(f"The skiptoken '{token[:40]}' is not one this service issued.", "skiptoken") from e
