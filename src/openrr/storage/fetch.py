"""Fetching a model's bytes over http(s): a SAS URL, a linked storage account's plain blob URL (signed by the
caller, storage/session_access.py) or any address the guard allows, with progress, size and decoding limits.

Every failure is a `FetchError` whose message says what went wrong without ever repeating a URL's query string
(it holds SAS signatures).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from openrr.protocol.redaction import display_url, redact
from openrr.storage.decoding import ACCEPT_ENCODING, BoundedDecoder, DecodeFailure, DecodeLimit
from openrr.storage.guard import FetchPolicy, FetchRefused
from openrr.storage.guard_http import guarded_client
from openrr.util.progress import Progress

CHUNK = 1 << 20


class FetchError(Exception):
    """The message says precisely what went wrong (unreachable URL + status, over a limit…), free of secrets."""


@dataclass(frozen=True)
class HttpOptions:
    """What a render server's http(s) model loads may reach, and how far encoded downloads may expand."""

    policy: FetchPolicy = field(default_factory=FetchPolicy)
    """Non-public addresses allowed (storage/guard.py); every connection and redirect hop is checked."""
    max_compression_ratio: float = 200.0
    """Decoded bytes per transferred byte of a Content-Encoding download (judged past 1 MiB decoded)."""


DEFAULT_HTTP = HttpOptions()


def scrub(text: str, url: str) -> str:
    """`text` without `url`'s query string or anything else the redactor knows to be secret."""
    # httpx and parsers rarely quote URLs in their messages; when they do, the signature must not leak
    return redact(text, url)


class HttpFetcher:
    """One httpx client for the model and whatever it references (glTF buffers, OBJ materials, textures).

    Its connections go through the address guard; bodies are decoded here, step by step, so that decoded bytes
    and the compression ratio are capped while decoding (a gzip bomb stops after its first MiB or so)."""

    def __init__(
        self,
        url: str,
        display: str,
        timeout_s: float,
        max_bytes: int,
        denied_hint: str | None = None,
        http: HttpOptions = DEFAULT_HTTP,
    ) -> None:
        self.url = url
        self.display = display
        self.denied_hint = denied_hint
        """Added to a blob service's refusal (it sends x-ms-error-code) of the model itself: linked or not."""
        self.timeout_s = timeout_s
        self.remaining = max_bytes
        self.max_bytes = max_bytes
        self.max_ratio = http.max_compression_ratio
        # Only encodings decoded here are asked for: httpx would decode others whole, past every cap.
        self.client = guarded_client(http.policy, httpx.Timeout(timeout_s), {"Accept-Encoding": ACCEPT_ENCODING})

    def __enter__(self) -> HttpFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def fetch_main(self, report: Progress) -> bytes:
        return self.fetch(self.url, report)

    def fetch(self, url: str, report: Progress | None = None) -> bytes:
        shown = display_url(url)
        chunks: list[bytes] = []
        try:
            with self.client.stream("GET", url) as response:
                if response.status_code != 200:
                    # Azure storage names the reason (AuthenticationFailed, BlobNotFound…) in a header;
                    # the body is not shown: an auth failure's body quotes the string that was signed
                    code = response.headers.get("x-ms-error-code")
                    detail = f", {code}" if code else ""
                    hint = ""
                    if code and self.denied_hint and url == self.url and response.status_code in (401, 403, 404, 409):
                        hint = f": {self.denied_hint}"
                    raise FetchError(
                        f"HTTP {response.status_code} {response.reason_phrase}{detail} fetching {shown}{hint}"
                    )
                total = content_length(response)
                if total is not None and total > self.remaining:
                    raise FetchError(f"{shown} is {total} bytes, over the limit of {self.max_bytes} bytes")
                decoder = BoundedDecoder(
                    response.headers.get("content-encoding"), self.remaining, self.max_ratio, step=CHUNK
                )
                for raw in response.iter_raw(CHUNK):
                    chunks.extend(decoder.feed(raw))
                    if report is not None and total:
                        # Content-Length counts transferred (possibly compressed) bytes
                        report(response.num_bytes_downloaded / total)
                chunks.append(decoder.finish())
        except FetchRefused as e:
            raise FetchError(f"cannot load {shown}: {e}") from None
        except DecodeLimit as e:
            setting = "model_max_bytes" if e.limit == "bytes" else "model_max_compression_ratio"
            flag = setting.replace("_", "-")
            del chunks
            raise FetchError(
                f"{shown} {e}: over the limit of {self.max_bytes if e.limit == 'bytes' else self.max_ratio:g}"
                f" (--{flag} / OPENRR_{setting.upper()})"
            ) from None
        except DecodeFailure as e:
            raise FetchError(f"cannot decode {shown}: {e}") from None
        except httpx.ConnectTimeout:
            raise FetchError(f"timed out after {self.timeout_s:g} s connecting to {shown}") from None
        except httpx.TimeoutException:
            raise FetchError(f"timed out after {self.timeout_s:g} s waiting for {shown}") from None
        except httpx.ConnectError as e:
            reason = scrub(str(e) or type(e).__name__, url)
            raise FetchError(f"cannot connect to {shown}: {reason}") from None
        except httpx.TooManyRedirects:
            raise FetchError(f"{shown} redirects too often (more than {self.client.max_redirects})") from None
        except httpx.HTTPError as e:
            reason = scrub(f"{type(e).__name__}: {e}", url)
            raise FetchError(f"download of {shown} failed: {reason}") from None
        data = b"".join(chunks)
        self.remaining -= len(data)
        if report is not None:
            report(1.0)
        return data


def content_length(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None
