"""Field checks shared by both API generations, with ARR's wording where ARR had one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote

from pydantic import BeforeValidator

from openrr.http.errors import bad_request
from openrr.util.json_values import describe

RESOURCE_ID = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
SUPPORTED_API_VERSIONS = ("2021-01-01", "2021-01-01-preview")


def check_resource_id(kind: str, value: str) -> str:
    if not RESOURCE_ID.fullmatch(value):
        shown = value if len(value) <= 64 else value[:61] + "..."
        raise bad_request(
            f"The {kind} ID '{shown}' is invalid: it must be 1 to 256 characters long and contain only "
            f"letters, digits, '-' and '_' (this one has {len(value)} characters).",
            f"{kind}Id",
        )
    return value


# An API path by its raw (still percent-encoded) segments: /[v1/]accounts/{account}/{sessions|conversions}[/{id}...]
_RAW_API_PATH = re.compile(
    r"^/(?P<v1>v1/)?accounts/(?P<account>[^/]*)/(?P<kind>sessions|conversions)(?:/(?P<id>[^/]*))?(?:/.*)?$", re.I
)


@dataclass(frozen=True)
class EncodedSlashIds:
    """The ids of an API path that no operation matched only because one of them holds an encoded '/'."""

    account_id: str
    kind: str
    """'session' or 'conversion'."""
    resource_id: str | None
    v1: bool


def ids_with_encoded_slash(raw_path: str) -> EncodedSlashIds | None:
    """The decoded ids of `raw_path` if its account or session/conversion id holds an encoded '/' (`a%2Fb`).

    Routing sees the decoded path, where `a%2Fb` is two segments, so such a path matches no operation; the id is
    what is wrong, and the client should hear that (a 400 naming the id rules), not "no operation matches".
    """
    m = _RAW_API_PATH.match(raw_path)
    if m is None:
        return None
    account, rid = m["account"], m["id"]
    if "%2f" not in account.lower() and (rid is None or "%2f" not in rid.lower()):
        return None
    kind = "session" if m["kind"].lower() == "sessions" else "conversion"
    return EncodedSlashIds(unquote(account), kind, None if rid is None else unquote(rid), m["v1"] is not None)


def check_api_version(value: str | None) -> str:
    supported = ", ".join(SUPPORTED_API_VERSIONS)
    if value is None or value == "":
        raise bad_request(
            f"The api-version query parameter is required. Supported versions: {supported}.", "api-version"
        )
    if value not in SUPPORTED_API_VERSIONS:
        raise bad_request(
            f"The api-version '{value}' is not supported. Supported versions: {supported}.", "api-version"
        )
    return value


def _whole_number(value: Any) -> Any:
    # JSON has one number type; 30 and 30.0 mean the same lease (PowerShell's TotalMinutes is a double).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected an integer number of minutes, got {describe(value)}.")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"expected an integer number of minutes, got {value}.")
        return int(value)
    return value


def _string(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {describe(value)}.")
    return value


WholeMinutes = Annotated[int, BeforeValidator(_whole_number)]
JsonString = Annotated[str, BeforeValidator(_string)]
