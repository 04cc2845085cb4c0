"""Links in responses (v1 `Location`, `@nextLink`), built on the configured public URL.

Never on the request's `Host` header: a client (or anything on the path that rewrites Host) could otherwise
make the service hand out links to a host of its choosing, which the official SDK then follows with the
caller's bearer token.
"""

from __future__ import annotations

from fastapi import Request


def public_link(base: str, path: str, query: str = "") -> str:
    """`base` (scheme, host, optional prefix) + an absolute path + an optional encoded query."""
    return base.rstrip("/") + path + (f"?{query}" if query else "")


def next_link(base: str, request: Request, skiptoken: str) -> str:
    """This request's path and query with `skiptoken` set, on the public base (it carries api-version itself,
    which the official SDK relies on: it fetches @nextLink as is)."""
    url = request.url.include_query_params(skiptoken=skiptoken)
    return public_link(base, url.path, url.query)


def route_link(base: str, request: Request, name: str, **params: str) -> str:
    """The public URL of a named route."""
    return public_link(base, str(request.app.url_path_for(name, **params)))
