"""Connection and session settings, merged as ARR's scripts merged them: flags > `OPENRR_*` env > arrconfig.json.

The file format is ARR's `Scripts/arrconfig.json`; unknown sections (assetConversionSettings, ...) are ignored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

from openrr.client.errors import ClientError
from openrr.protocol.timespan import parse_timespan

# ARRUtils.ps1 $AllPublicRegions: bare names from this list map to Azure's hosts.
PUBLIC_REGIONS = (
    "australiaeast",
    "eastus",
    "eastus2",
    "japaneast",
    "northeurope",
    "southcentralus",
    "southeastasia",
    "uksouth",
    "westeurope",
    "westus2",
)
_AZURE_SUFFIX = ".mixedreality.azure.com"
SIZES = {"standard": "Standard", "premium": "Premium"}

ENV_ACCOUNT_ID = "OPENRR_ACCOUNT_ID"
ENV_ACCOUNT_KEY = "OPENRR_ACCOUNT_KEY"
ENV_ENDPOINT = "OPENRR_ENDPOINT"
ENV_STS_ENDPOINT = "OPENRR_STS_ENDPOINT"
ENV_CA_CERT = "OPENRR_CA_CERT"
# The bundle `requests` (and so the Azure SDK) honours: users of openrr often have it set already.
ENV_REQUESTS_CA = "REQUESTS_CA_BUNDLE"

DEFAULT_CONFIG_NAME = "arrconfig.json"


class ConfigError(ClientError):
    """Settings that are missing or malformed; one line per problem, each naming where to set it."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def is_filled(value: object) -> TypeGuard[str]:
    """ARR's template ships `"<fill in ...>"` placeholders: those (and empty values) mean "not set"."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    return bool(text) and not (text.startswith("<") and text.endswith(">"))


def to_domain(value: str, kind: Literal["rendering", "account"]) -> str:
    """ARRUtils.ps1 ToDomain: a public region name becomes Azure's URL; anything else is used as a host."""
    text = value.strip().rstrip("/")
    lowered = text.lower()
    if lowered.startswith("http://"):
        return text  # an explicit plain-HTTP server (`openrr serve --no-tls`): keep it as given
    bare = text[len("https://") :] if lowered.startswith("https://") else text
    region = bare.lower().removesuffix(_AZURE_SUFFIX)
    if region in PUBLIC_REGIONS:
        host = "remoterendering" if kind == "rendering" else "sts"
        return f"https://{host}.{region}{_AZURE_SUFFIX}"
    return f"https://{bare}"


@dataclass(frozen=True)
class ArrConfig:
    """The values of an arrconfig.json that matter to sessions; None where absent or a placeholder."""

    path: Path
    account_id: str | None = None
    account_key: str | None = None
    account_domain: str | None = None
    rendering_domain: str | None = None
    vm_size: str | None = None
    max_lease_time: str | None = None


def load_arrconfig(path: Path) -> ArrConfig:
    try:
        # utf-8-sig: PowerShell editors like to write a BOM.
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as e:
        raise ConfigError([f"config file {path} not found"]) from e
    except (OSError, ValueError) as e:
        raise ConfigError(
            [f"could not parse config file {path}: {e} (a stray comma often makes a JSON file invalid)"]
        ) from e
    if not isinstance(doc, dict):
        raise ConfigError([f"config file {path} must hold a JSON object"])

    def section(name: str) -> dict[str, Any]:
        value = doc.get(name)
        return value if isinstance(value, dict) else {}

    def text(values: dict[str, Any], key: str) -> str | None:
        value = values.get(key)
        return value.strip() if is_filled(value) else None

    account, rendering = section("accountSettings"), section("renderingSessionSettings")
    return ArrConfig(
        path=path,
        account_id=text(account, "arrAccountId"),
        account_key=text(account, "arrAccountKey"),
        account_domain=text(account, "arrAccountDomain"),
        rendering_domain=text(rendering, "remoteRenderingDomain"),
        vm_size=text(rendering, "vmSize"),
        max_lease_time=text(rendering, "maxLeaseTime"),
    )


def find_config(explicit: Path | None, cwd: Path | None = None) -> ArrConfig | None:
    """`--config FILE`, else ./arrconfig.json if there is one (the script read the file next to itself)."""
    if explicit is not None:
        return load_arrconfig(explicit)
    candidate = (cwd or Path.cwd()) / DEFAULT_CONFIG_NAME
    return load_arrconfig(candidate) if candidate.is_file() else None


@dataclass(frozen=True)
class Connection:
    account_id: str
    account_key: str
    endpoint: str
    """Rendering domain as a base URL, e.g. `https://127.0.0.1:8443`."""
    sts_endpoint: str
    """Account domain (STS) as a base URL."""
    ca_cert: str | None


def _first(*values: str | None) -> str | None:
    for v in values:
        if is_filled(v):
            return v.strip()
    return None


def _where(flag: str, env: str | None, key: str, config: ArrConfig | None) -> str:
    places = [f"pass {flag}"]
    if env:
        places.append(f"set {env}")
    places.append(f"fill in {key} in {config.path}" if config else f"set {key} in an arrconfig.json (--config FILE)")
    return ", ".join(places[:-1]) + " or " + places[-1]


def resolve_connection(
    *,
    account_id: str | None,
    account_key: str | None,
    endpoint: str | None,
    sts_endpoint: str | None,
    ca_cert: str | None,
    env: Mapping[str, str],
    config: ArrConfig | None,
) -> Connection:
    """Flags first, then the environment, then the file; every missing setting is reported at once."""
    cfg = config or ArrConfig(path=Path(DEFAULT_CONFIG_NAME))
    problems: list[str] = []

    aid = _first(account_id, env.get(ENV_ACCOUNT_ID), cfg.account_id)
    if aid is None:
        where = _where("--account-id", ENV_ACCOUNT_ID, "accountSettings.arrAccountId", config)
        problems.append(f"accountSettings.arrAccountId not filled in - {where}")
    else:
        try:
            uuid.UUID(aid)
        except ValueError:
            problems.append(f"accountSettings.arrAccountId '{aid}' is not a valid GUID")

    key = _first(account_key, env.get(ENV_ACCOUNT_KEY), cfg.account_key)
    if key is None:
        where = _where("--account-key", ENV_ACCOUNT_KEY, "accountSettings.arrAccountKey", config)
        problems.append(f"accountSettings.arrAccountKey not filled in - {where}")

    rendering = _first(endpoint, env.get(ENV_ENDPOINT), cfg.rendering_domain)
    if rendering is None:
        where = _where("--endpoint", ENV_ENDPOINT, "renderingSessionSettings.remoteRenderingDomain", config)
        problems.append(f"renderingSessionSettings.remoteRenderingDomain not filled in - {where}")
    # openrr serves STS and sessions on one address, so the rendering endpoint is a fine STS default.
    account_domain = _first(sts_endpoint, env.get(ENV_STS_ENDPOINT), cfg.account_domain)

    if problems:
        raise ConfigError(problems)
    assert aid is not None and key is not None and rendering is not None
    endpoint_url = to_domain(rendering, "rendering")
    sts_url = to_domain(account_domain, "account") if account_domain else endpoint_url
    ca = None
    for source, value in (
        ("--ca-cert", ca_cert),
        (ENV_CA_CERT, env.get(ENV_CA_CERT)),
        (ENV_REQUESTS_CA, env.get(ENV_REQUESTS_CA)),
    ):
        if is_filled(value):
            ca = value.strip()
            if not Path(ca).is_file():
                raise ConfigError([f"CA certificate file {ca} (from {source}) not found"])
            break
    return Connection(aid, key, endpoint_url, sts_url, ca)


def resolve_size(flag: str | None, config: ArrConfig | None) -> str:
    """The API's spelling (`Standard`/`Premium`) of --size or renderingSessionSettings.vmSize."""
    value = _first(flag, config.vm_size if config else None)
    if value is None:
        where = _where("--size", None, "renderingSessionSettings.vmSize", config)
        raise ConfigError([f"renderingSessionSettings.vmSize not filled in - {where} (standard or premium)"])
    size = SIZES.get(value.lower())
    if size is None:
        raise ConfigError([f"renderingSessionSettings.vmSize '{value}' not valid - use standard or premium"])
    return size


def lease_minutes(seconds: float, text: str) -> int:
    if seconds < 0:
        raise ConfigError([f"renderingSessionSettings.maxLeaseTime '{text}' must not be negative"])
    # The script sent `TotalMinutes -as [int]`: .NET rounds half to even, as Python's round() does.
    return round(seconds / 60)


def resolve_lease(lease_time: str | None, minutes: int | None, config: ArrConfig | None) -> int:
    """Lease minutes from --lease-minutes, --lease-time hh:mm:ss or renderingSessionSettings.maxLeaseTime."""
    if minutes is not None:
        if minutes < 0:
            raise ConfigError(["--lease-minutes must not be negative"])
        return minutes
    text = _first(lease_time, config.max_lease_time if config else None)
    if text is None:
        flag = "--lease-time hh:mm:ss (or --lease-minutes N)"
        where = _where(flag, None, "renderingSessionSettings.maxLeaseTime", config)
        raise ConfigError([f"renderingSessionSettings.maxLeaseTime not filled in - {where}"])
    try:
        seconds = parse_timespan(text)
    except ValueError as e:
        raise ConfigError([f"renderingSessionSettings.maxLeaseTime not valid - {e}"]) from e
    return lease_minutes(seconds, text)
