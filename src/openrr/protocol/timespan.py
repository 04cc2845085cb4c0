""".NET TimeSpan text, as the v1 API used it: `[-][d.]h:m[:s[.fffffff]]` in, `[d.]hh:mm:ss` out."""

from __future__ import annotations

import re

_TIMESPAN = re.compile(
    r"^\s*(?P<neg>-)?(?:(?P<days>\d+)\.)?(?P<h>\d+):(?P<m>\d+)(?::(?P<s>\d+)(?:\.(?P<frac>\d{1,7}))?)?\s*$"
)
_DAYS_ONLY = re.compile(r"^\s*(?P<neg>-)?(?P<days>\d+)\s*$")


def parse_timespan(text: str) -> float:
    """Seconds. Raises ValueError with a readable message for anything .NET would not parse."""
    m = _TIMESPAN.match(text) or _DAYS_ONLY.match(text)
    if m is None:
        raise ValueError(f"'{text}' is not a time span; use hh:mm:ss, for example 4:00:00.")
    parts = m.groupdict()
    hours, minutes = int(parts.get("h") or 0), int(parts.get("m") or 0)
    seconds = int(parts.get("s") or 0)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"'{text}' is not a time span: hours must be < 24, minutes and seconds < 60.")
    frac = parts.get("frac") or ""
    total = (
        int(parts.get("days") or 0) * 86400
        + hours * 3600
        + minutes * 60
        + seconds
        + (int(frac) / 10 ** len(frac) if frac else 0.0)
    )
    return -total if parts.get("neg") else total


def format_timespan(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{days}.{h:02d}:{m:02d}:{s:02d}" if days else f"{h:02d}:{m:02d}:{s:02d}"
