"""The wire side of keyset paging: the opaque `skiptoken` (creation time, id of the last row shown) and the
`@nextLink` that carries it. The query side is store/paging.py."""

from __future__ import annotations

import base64
import datetime as dt
import json

from fastapi import Request

from openrr.http.errors import bad_request
from openrr.http.links import next_link

Cursor = tuple[dt.datetime, str]
"""Where a page ends: the (creation time, id) of its last row (store/paging.py's Cursor)."""


def encode_skiptoken(after: Cursor) -> str:
    raw = json.dumps([after[0].isoformat(), after[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_skiptoken(token: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        when, ident = json.loads(raw)
        return dt.datetime.fromisoformat(when), str(ident)
    except (ValueError, TypeError) as e:
        raise bad_request(f"The skiptoken '{token[:40]}' is not one this service issued.", "skiptoken") from e


def requested_after(request: Request) -> Cursor | None:
    """Where the page asked for starts: after the request's `skiptoken`, or at the beginning."""
    token = request.query_params.get("skiptoken")
    return decode_skiptoken(token) if token else None


def next_page_link(base: str, request: Request, next_after: Cursor | None) -> str | None:
    """The `@nextLink` of a page that ends at `next_after` (None: the last page). The official SDK fetches it as
    is, adding nothing: the link carries this request's query, api-version included."""
    return None if next_after is None else next_link(base, request, encode_skiptoken(next_after))
