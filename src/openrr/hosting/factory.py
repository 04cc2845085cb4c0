"""Builds the configured hosting backend; the only place that knows which one runs.

Each backend is imported only when chosen: the Kubernetes client is not loaded by a local control plane, nor the
local backend's process machinery by one that runs render servers as pods.
"""

from __future__ import annotations

from collections.abc import Callable

from openrr.config import Settings
from openrr.hosting.backend import HostingBackend
from openrr.hosting.server_limits import ServerLimits
from openrr.storage.session_access import GrantSource


def build_backend(
    settings: Settings,
    storage_grants: GrantSource | None = None,
    token_key_ids: Callable[[str], frozenset[str]] | None = None,
) -> HostingBackend:
    if settings.hosting == "kubernetes":
        return build_kubernetes(settings, storage_grants, token_key_ids)
    from openrr.hosting.local import LocalBackend, LocalBackendOptions

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
            limits=server_limits(settings),
            sts_public_key=settings.sts_public_key_path,
            storage_grants=storage_grants,
            token_key_ids=token_key_ids,
            child_user=settings.child_user,
            memory_limit=settings.render_memory_limit,
            local_roots=tuple(settings.effective_local_storage_roots),
            local_models=settings.local_models,
            tls_dir=settings.tls_dir,
        )
    )


def build_kubernetes(
    settings: Settings,
    storage_grants: GrantSource | None = None,
    token_key_ids: Callable[[str], frozenset[str]] | None = None,
) -> HostingBackend:
    from openrr.hosting.kube_pod import PodTemplate
    from openrr.hosting.kubernetes import KubernetesBackend, KubernetesBackendOptions
    from openrr.hosting.server_control import ServerControl

    return KubernetesBackend(
        KubernetesBackendOptions(
            kubeconfig=settings.kubeconfig,
            namespace=settings.kube_namespace,
            template=PodTemplate(
                image=settings.kube_render_image,
                stop_grace_s=settings.stop_grace_s,
                sts_secret=settings.kube_sts_secret,
                resources=settings.kube_resources,
                limits=server_limits(settings),
                extra_volumes=tuple(settings.kube_extra_volumes),
            ),
            port_range=settings.kube_port_range,
            warm_pool=settings.warm_pool,
            tls_dir=settings.tls_dir,
            sts_public_key=settings.sts_public_key_path,
            node_hostnames=settings.kube_node_hostnames,
            control=ServerControl(storage_grants, token_key_ids),
        )
    )


def server_limits(settings: Settings) -> ServerLimits:
    return ServerLimits(
        standard_primitive_limit=settings.standard_primitive_limit,
        fetch_allow=tuple(settings.fetch_allow),
        model_max_bytes=settings.model_max_bytes,
        model_max_compression_ratio=settings.model_max_compression_ratio,
        texture_max_dimension=settings.texture_max_dimension,
        texture_max_pixels=settings.texture_max_pixels,
        handshake_timeout_s=settings.handshake_timeout_s,
        keep_alive_timeout_s=settings.keep_alive_timeout_s,
        orphan_timeout_s=settings.render_orphan_timeout_s or None,
    )
