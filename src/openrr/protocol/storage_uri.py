"""Container URIs: `https://acct.blob.core.windows.net/container`, path-style
`http://127.0.0.1:10000/acct/container` (Azurite, IP endpoints) and `file:///dir/container`; blob service endpoints
and Azure Storage connection strings. The API's bodies and `openrr convert` speak these, so server and client share
them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

BLOB_SCHEMES = ("https", "http")

# Azurite's fixed development account, which `UseDevelopmentStorage=true` names (public; not a secret).
_DEV_ACCOUNT = "devstoreaccount1"
_DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class ContainerUri:
    uri: str
    """As given, without a trailing `/`."""
    scheme: str
    endpoint: str
    """Blob service endpoint (no trailing `/`); empty for file:// containers."""
    container: str
    """Container name; for file:// the directory path."""

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def storage_account(self) -> str:
        """The storage account's name as the v1 API spoke of it."""
        if self.is_local:
            return ""
        parts = urlsplit(self.endpoint)
        path = parts.path.strip("/")
        return path.split("/")[-1] if path else (parts.hostname or "").split(".")[0]

    @property
    def local_path(self) -> Path:
        return Path(self.container)


def parse_container_uri(text: str) -> ContainerUri:
    """Raises ValueError with a sentence saying what is wrong."""
    uri = text.strip().rstrip("/")
    if not uri:
        raise ValueError("it is empty")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"a file:// URI names a directory on this machine, not on '{parts.netloc}'")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError("a file:// URI needs an absolute path, e.g. file:///srv/openrr/containers/input")
        if parts.query or parts.fragment:
            raise ValueError("a file:// URI takes no query or fragment")
        return ContainerUri(uri, "file", "", path)
    if scheme not in BLOB_SCHEMES:
        raise ValueError(f"the scheme '{parts.scheme}' is not supported: use https://, http:// or file://")
    if not parts.hostname:
        raise ValueError("it has no host name")
    if parts.query:
        raise ValueError("it must not carry a query string: give the SAS token in its own field")
    if parts.fragment or parts.username or parts.password:
        raise ValueError("it must not carry a fragment or credentials")
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"its port is invalid ({e})") from None
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        raise ValueError("it names no container: expected https://<account>.blob.core.windows.net/<container>")
    host = parts.hostname.lower()
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    endpoint = f"{scheme}://{netloc}" + "".join(f"/{s}" for s in segments[:-1])
    return ContainerUri(uri, scheme, endpoint, unquote(segments[-1]))


def normalise_endpoint(text: str) -> str:
    """A blob service endpoint in the form links are stored and matched in."""
    parts = urlsplit(text.strip().rstrip("/"))
    if parts.scheme.lower() not in BLOB_SCHEMES or not parts.hostname:
        raise ValueError(f"'{text}' is not a blob endpoint URL (https://<account>.blob.core.windows.net)")
    host = parts.hostname.lower()
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


def default_endpoint(storage_account: str) -> str:
    return f"https://{storage_account}.blob.core.windows.net"


def parse_connection_string(text: str) -> tuple[str, str, str]:
    """(account name, account key, blob endpoint) of an Azure Storage connection string."""
    fields: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key_name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"'{key_name}' in the connection string is not NAME=VALUE")
        fields[key_name.strip().lower()] = value.strip()
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        return _DEV_ACCOUNT, _DEV_KEY, f"http://127.0.0.1:10000/{_DEV_ACCOUNT}"
    name, key = fields.get("accountname"), fields.get("accountkey")
    if not name or not key:
        raise ValueError("the connection string needs AccountName and AccountKey (a SAS connection string cannot link)")
    endpoint = fields.get("blobendpoint", "")
    if not endpoint:
        protocol = fields.get("defaultendpointsprotocol", "https")
        suffix = fields.get("endpointsuffix", "core.windows.net")
        endpoint = f"{protocol}://{name}.blob.{suffix}"
    return name, key, endpoint
