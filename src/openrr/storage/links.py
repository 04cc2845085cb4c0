"""What a storage link is: a blob storage account's endpoint, name and shared key, as an operator gives them (a
connection string or a name whose endpoint is Azure's default: protocol/storage_uri.py reads both). The registry
that keeps links per openrr account is accounts/storage_links.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinkCredentials:
    blob_endpoint: str
    storage_account: str
    account_key: str
