"""Builds the configured hosting backend; the only place that knows which one runs."""

from __future__ import annotations

from openrr.config import Settings
from openrr.hosting.local import LocalBackend, LocalBackendOptions
from openrr.storage.session_access import GrantSource


def build_backend(settings: Settings, storage_grants: GrantSource | None = None) -> LocalBackend:
    return LocalBackend(
        LocalBackendOptions(
            hosts_dir=settings.hosts_dir,
            logs_dir=settings.data_dir / "logs",
            bind_host=settings.host,
            public_hostname=settings.public_render_hostname,
            warm_pool=settings.warm_pool,
            certfile=settings.server_cert_path if settings.tls else None,
            keyfile=settings.server_key_path if settings.tls else None,
            stop_grace_s=settings.stop_grace_s,
            standard_primitive_limit=settings.standard_primitive_limit,
            sts_public_key=settings.sts_public_key_path,
            storage_grants=storage_grants,
        )
    )
