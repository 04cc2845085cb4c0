"""The one way openrr (server and client) shows a URL or text that may quote one: without credentials.

URLs name SAS signatures in their query and passwords in their user-info; both end up in messages, logs, the
inspector and `getScene` answers unless every place that shows a URL goes through here.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

SAS_PARAMETERS = frozenset(
    {
        # Every field of an Azure Storage SAS (service, account, user delegation), not only its signature: each
        # is signed with it, and together they say what the credential may do, where and until when.
        "sv", "ss", "srt", "sp", "se", "st", "spr", "sip", "sr", "si", "sig", "sdd", "ses",
        "skoid", "sktid", "skt", "ske", "sks", "skv", "saoid", "suoid", "scid",
        "rscc", "rscd", "rsce", "rscl", "rsct", "tn", "spk", "srk", "epk", "erk",
    }
)  # fmt: skip
CREDENTIAL_PARAMETERS = frozenset(
    {
        # Names of shared keys, tokens and passwords in query strings and connection strings.
        "signature", "accountkey", "account_key", "sharedaccesskey", "sharedaccesssignature", "key",
        "token", "access_token", "refresh_token", "id_token", "password", "secret", "client_secret",
    }
)  # fmt: skip
SECRET_PARAMETERS = SAS_PARAMETERS | CREDENTIAL_PARAMETERS
"""What `redact` masks wherever `NAME=value` appears (case-insensitive): the union of what openrr's two
redactors (this module's and the model fetcher's, which masked a URL's whole query) treated as secret."""
_SECRET_PARAM = re.compile(r"(?i)\b(" + "|".join(sorted(SECRET_PARAMETERS, key=len, reverse=True)) + r")=[^&;\s'\"]*")
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


def redact(text: str, *urls: str) -> str:
    """Free text (library messages, log lines) with SAS fields, keys, tokens and URL passwords masked, and the
    whole query string of each of `urls` (the ones the text may quote) replaced, whatever its parameters."""
    for url in urls:
        query = urlsplit(url).query
        if query:
            text = text.replace(query, "<redacted>")
    text = _USERINFO.sub(r"\1", text)
    return _SECRET_PARAM.sub(r"\1=<redacted>", text)
