"""The one way openrr (server and client) shows a URL or text that may quote one: without credentials.

URLs name SAS signatures in their query and passwords in their user-info; both end up in messages, logs, the
inspector and `getScene` answers unless every place that shows a URL goes through here.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# Query parameters and header-like fields that carry secrets (SAS `sig`, shared keys, tokens, passwords).
_SECRET_PARAM = re.compile(
    r"(?i)\b(sig|signature|accountkey|account_key|key|token|access_token|password|secret)=[^&;\s'\"]*"
)
# user:password@ (or a bare user@) in any URL-looking text.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/@\s'\"]*@")


def display_url(url: str) -> str:
    """scheme://host[:port]/path: no user-info, query or fragment. Non-URLs (local paths) come back as they are."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if not parts.scheme or not parts.netloc:
        return url if not parts.query else url.split("?", 1)[0]
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redact(text: str) -> str:
    """Free text (library messages, log lines) with signatures, keys, tokens and URL passwords masked."""
    text = _USERINFO.sub(r"\1", text)
    return _SECRET_PARAM.sub(r"\1=<redacted>", text)
