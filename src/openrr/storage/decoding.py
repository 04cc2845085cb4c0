"""Content-Encoding decoding with a cap on decoded bytes and on the compression ratio.

httpx would inflate a whole network read at once: a 64 KiB read of a gzip bomb is 64 MB of zeros before any
check could look at it. Here every step yields at most `step` decoded bytes, and the caps are checked after each,
so memory stays bounded by one step whatever the ratio.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

RATIO_FLOOR = 1 << 20
"""Decoded bytes before the ratio is judged: small, highly compressible files (JSON, flat textures) are fine."""
ENCODINGS = ("gzip", "x-gzip", "deflate")
ACCEPT_ENCODING = "gzip, deflate"


class DecodeLimit(Exception):
    """Decoded bytes or the compression ratio went past a cap; `limit` names which ("bytes" or "ratio")."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class DecodeFailure(Exception):
    """The body does not decode as its Content-Encoding says, or names an encoding not supported."""


class BoundedDecoder:
    def __init__(
        self,
        content_encoding: str | None,
        max_bytes: int,
        max_ratio: float,
        step: int = 1 << 20,
        ratio_floor: int = RATIO_FLOOR,
    ) -> None:
        encoding = (content_encoding or "identity").strip().lower()
        if encoding not in (*ENCODINGS, "identity", ""):
            raise DecodeFailure(f"its Content-Encoding '{encoding}' is not supported (only {', '.join(ENCODINGS)})")
        self.encoding = encoding
        self.max_bytes = max_bytes
        self.max_ratio = max_ratio
        self.step = step
        self.ratio_floor = ratio_floor
        self.transferred = 0
        self.decoded = 0
        self._inflate: zlib._Decompress | None = None
        if encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS)
        self._raw_deflate_tried = False

    @property
    def compressed(self) -> bool:
        return self._inflate is not None

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.transferred += len(data)
        if self._inflate is None:
            yield self._count(data)
            return
        pending = data
        while True:
            out = self._decompress(pending)
            pending = self._inflate.unconsumed_tail
            if self._inflate.eof and self._inflate.unused_data and self.encoding != "deflate":
                # gzip may hold several members one after the other
                pending = self._inflate.unused_data + pending
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            if out:
                yield self._count(out)
            elif not pending:
                return

    def finish(self) -> bytes:
        if self._inflate is None:
            return b""
        try:
            return self._count(self._inflate.flush())
        except zlib.error as e:
            raise DecodeFailure(f"its {self.encoding} body is corrupt ({e})") from None

    def _decompress(self, data: bytes) -> bytes:
        assert self._inflate is not None
        try:
            return self._inflate.decompress(data, self.step)
        except zlib.error as e:
            if self.encoding == "deflate" and not self._raw_deflate_tried and self.decoded == 0:
                # Servers disagree on "deflate": zlib-wrapped (the RFC) or raw; try raw once, as browsers do.
                self._raw_deflate_tried = True
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                return self._decompress(data)
            raise DecodeFailure(f"its {self.encoding} body is corrupt ({e})") from None

    def _count(self, out: bytes) -> bytes:
        self.decoded += len(out)
        if self.decoded > self.max_bytes:
            raise DecodeLimit("bytes", f"decodes to over {self.max_bytes} bytes")
        if (
            self._inflate is not None
            and self.decoded > self.ratio_floor
            and self.decoded > self.max_ratio * max(1, self.transferred)
        ):
            raise DecodeLimit(
                "ratio", f"decompresses more than {self.max_ratio:g} times ({self.encoding}: a compression bomb?)"
            )
        return out
