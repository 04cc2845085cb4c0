"""What a conversion needs from a container, whichever kind it is."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class BlobEntry:
    name: str
    size: int


class Container(Protocol):
    @property
    def display(self) -> str:
        """The container's URI without credentials, for messages."""
        ...

    def list(self, prefix: str) -> Iterator[BlobEntry]: ...

    def download(self, name: str, dest: Path) -> None: ...

    def upload(self, name: str, src: Path) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ContainerAccess:
    """How to reach one container: handed from the control plane to a worker process (on its stdin, never argv)."""

    uri: str
    sas: str | None = None
    storage_account: str | None = None
    account_key: str | None = None
    """Linked storage: the shared key of the storage account."""
    local_roots: list[str] = field(default_factory=list)
    """file:// containers: the directories they may lie under."""
    fetch_allow: list[str] = field(default_factory=list)
    """Blob containers: the operator's `--fetch-allow` entries; other non-public addresses are refused (guard.py)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ContainerAccess:
        return cls(**doc)


def open_container(access: ContainerAccess) -> Container:
    from openrr.protocol.storage_uri import parse_container_uri

    uri = parse_container_uri(access.uri)
    if uri.is_local:
        from openrr.storage.local import LocalContainer

        return LocalContainer(uri.local_path, [Path(r) for r in access.local_roots])
    from openrr.storage.blob import BlobContainer

    return BlobContainer(uri, access)
