"""One file's bytes from where a client may point a render session: a local path or file:// URL in the session
account's area, an http(s) URL the address guard allows, or a blob URL of linked storage (signed here) or with its
own SAS. The same routes, limits and messages as a model's main file (model_loader.py); used for environment maps.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from openrr.protocol.redaction import display_url
from openrr.storage.area_files import LOCAL_FILES_OFF, LocalFiles
from openrr.storage.fetch import DEFAULT_HTTP, FetchError, HttpFetcher, HttpOptions
from openrr.storage.session_access import SESSION_STORAGE, SessionStorage


class SourceFetchFailed(Exception):
    """The message says why (unreachable, refused, over the limit), never with a URL's query string."""


def fetch_source(
    source: str,
    *,
    timeout_s: float = 60.0,
    max_bytes: int,
    storage: SessionStorage = SESSION_STORAGE,
    http: HttpOptions = DEFAULT_HTTP,
    local_files: LocalFiles | None = None,
) -> tuple[bytes, str]:
    """The bytes of `source` and how to show it in messages (no query string)."""
    try:
        if urlsplit(source).scheme.lower() in ("http", "https"):
            display = display_url(source)
            hint = storage.denied_hint(source)
            with HttpFetcher(storage.authorize(source), display, timeout_s, max_bytes, hint, http) as fetcher:
                return fetcher.fetch_main(lambda _fraction: None), display
        if local_files is None:
            raise SourceFetchFailed(LOCAL_FILES_OFF)
        display = local_files.display(source)
        return local_files.read(source, max_bytes), display
    except FetchError as e:  # LocalFileRefused too: its message is written for the client
        raise SourceFetchFailed(str(e)) from None
