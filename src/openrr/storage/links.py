"""What a storage link is: a blob storage account's endpoint, name and shared key, as an operator gives them
(a connection string, or a name whose endpoint is Azure's default). The registry that keeps links per openrr
account is accounts/storage_links.py.
"""

from __future__ import annotations

from dataclasses import dataclass

# Azurite's fixed development account, which `UseDevelopmentStorage=true` names (public; not a secret).
_DEV_ACCOUNT = "devstoreaccount1"
_DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class LinkCredentials:
    blob_endpoint: str
    storage_account: str
    account_key: str


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
