"""Service settings: embedded defaults, overridable by `OPENRR_*` environment variables and CLI flags."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "openrr"


def default_replica_id() -> str:
    """This control plane's name in the store's ownership columns: unique per process, readable in logs."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(2)}"


def default_capacity() -> dict[str, int]:
    # A render server is one process; once it renders on the CPU it wants most of a core, and a Premium
    # session is meant to get more than a Standard one.
    cores = os.cpu_count() or 2
    return {"Standard": max(2, cores), "Premium": max(1, cores // 2)}


class KubeHostVolume(BaseModel):
    """A directory of the node mounted into every render pod (`kube_extra_volumes`), in the pod spec's spelling:
    {"name", "hostPath", "mountPath", "readOnly" (default true)}. hostPath only: nothing secret belongs here."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")
    name: str
    host_path: str = Field(alias="hostPath")
    mount_path: str = Field(alias="mountPath")
    read_only: bool = Field(default=True, alias="readOnly")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENRR_", env_nested_delimiter="__")

    data_dir: Path = Field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 8443
    database_url: str | None = None
    """SQLAlchemy URL; None means the SQLite file `openrr.db` inside the data directory."""
    tls: bool = True
    render_hostname: str | None = None
    """Name clients use to reach render servers; None means `host` (or this machine's name if that is a wildcard)."""
    extra_hostnames: list[str] = Field(default_factory=list)
    """More names for the certificate's SAN list."""

    warm_pool: dict[str, int] = Field(default_factory=lambda: {"Standard": 1, "Premium": 0})
    capacity: dict[str, int] = Field(default_factory=default_capacity)

    token_lifetime_s: int = 24 * 3600
    rate_limit_per_s: float = 50.0
    """Sustained requests per second allowed per account (token bucket)."""
    rate_limit_burst: int = 200
    retention_days: int = 30
    list_page_size: int = 50
    reconcile_interval_s: float = 1.0
    start_timeout_s: float = 60.0
    stop_grace_s: float = 5.0
    max_body_bytes: int = 64 * 1024
    standard_primitive_limit: int = 20_000_000
    """Primitives a Standard session renders before it shows a checkerboard instead (ARR's limit; lower it to try)."""

    conversion_workers: int = Field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2))
    """Conversions run at once by this control plane, each in its own worker process (0: run none here)."""
    conversion_attempts: int = 2
    """Tries per conversion: a worker that dies (crash, kill -9, lost control plane) is retried once."""
    conversion_lease_s: float = 30.0
    """A Running conversion whose control plane has not reported for this long is taken over by another."""
    conversion_nice: int = 10
    """Niceness of worker processes, so that conversions yield the CPU to the API and render servers."""
    conversion_max_input_bytes: int = 16 * 1024**3
    conversion_timeout_s: float = 6 * 3600
    """A conversion still running after this long is stopped and fails."""
    local_storage_roots: list[Path] = Field(default_factory=list)
    """Directories under which `file://` containers may lie; empty means DATA_DIR/containers."""
    # --- security (issue 9; see docs/security.md) ---------------------------------------------------------
    fetch_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Outbound fetches (render servers, conversion workers, blob clients) refuse loopback, link-local, private,
    unique-local and unspecified addresses unless an entry here allows them: `host`, `host:port` or a CIDR."""

    @field_validator("fetch_allow", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # OPENRR_FETCH_ALLOW=127.0.0.1:10000,10.0.0.0/8 as the CLI takes it, not pydantic-settings' JSON list;
        # entries are checked here so that a typo stops the service at start.
        if isinstance(value, str):
            value = [e.strip() for e in value.split(",") if e.strip()]
        if isinstance(value, list):
            from openrr.storage.guard import FetchPolicy

            FetchPolicy.parse([str(v) for v in value])
        return value

    local_models: bool = True
    """Render servers may load local files from the session account's area (`<local storage root>/<accountId>/`)."""
    model_max_bytes: int = 2 * 1024**3
    """Bytes a render server fetches or decodes for one model (file, buffers, textures, after decompression)."""
    model_max_compression_ratio: float = 200.0
    """Decoded bytes per transferred byte of a compressed (Content-Encoding) download."""
    texture_max_dimension: int = 16384
    texture_max_pixels: int = 64 * 1024 * 1024
    child_user: str | None = None
    """User that render servers and conversion workers run as when the service runs as root (default: nobody)."""
    render_memory_limit: dict[str, int] = Field(
        default_factory=lambda: {"Standard": 8 * 1024**3, "Premium": 16 * 1024**3}
    )
    """Memory limit (RLIMIT_DATA: heap and anonymous memory) of a render server and of its render process, each,
    in bytes, per size."""
    tls_cert: Path | None = None
    """The operator's own certificate (PEM, chain included) for the control plane; None: the local CA's."""
    tls_key: Path | None = None
    public_url: str | None = None
    """Base URL clients reach this service at, for links in responses (v1 Location, @nextLink); None: `endpoint`."""
    handshake_timeout_s: float = 10.0
    """A connection that has not completed TLS or sent a request within this long is dropped."""
    keep_alive_timeout_s: float = 10.0
    render_orphan_timeout_s: float = Field(default=300.0, ge=0)
    """A render server that hears nothing from a control plane for this long stops itself (its control plane was
    killed and never came back); 0: never. Every control plane reaches its servers every few reconcile passes."""
    max_connections: int = 1000
    """Concurrent connections served; past it requests get 503."""

    secrets_key: str | None = None
    """Fernet key that encrypts storage credentials at rest; None means the key file DATA_DIR/secrets.key.
    Replicas sharing one database must share this key."""

    # --- replicas on one database (issue 12; docs/kubernetes.md) ------------------------------------------------
    replica_id: str = Field(default_factory=default_replica_id)
    """Who drives a session: the owner written in its record (computed at start; set it only to name replicas)."""
    session_lease_s: float = 10.0
    """A session whose replica has not renewed its ownership for this long is taken over by another; the takeover
    bound is this plus one reconcile interval."""
    ca_dir: Path | None = None
    """The local CA's directory, shared by replicas so that every one serves and hands render servers leaves of one
    CA; None: DATA_DIR/tls."""
    fast_start: bool = True
    """A create with a free warm server answers Ready (hidden; off only to measure the old behaviour)."""
    fast_start_wait_s: float = 2.0
    """How long a create waits for a warm server's health answer before it answers Starting."""

    # --- hosting: where render servers run (issue 12; hosting/factory.py, docs/kubernetes.md) -------------------
    hosting: Literal["local", "kubernetes"] = "local"
    """local: child processes of this control plane; kubernetes: one pod per session (hosting/kubernetes.py)."""
    kubeconfig: Path | None = None
    """The cluster to run render pods in; None: the in-cluster service account."""
    kube_namespace: str = "openrr"
    kube_render_image: str = "openrr/render-server:latest"
    kube_port_range: tuple[int, int] = (7000, 8999)
    """Host ports render pods get, in pairs (P handshake, P+1 inspector); clients connect straight to the node. Outside
    Kubernetes' NodePort range (30000-32767), whose ports kube-proxy holds on every node unknown to the scheduler."""
    kube_resources: dict[str, dict[str, dict[str, str]]] = Field(default_factory=dict)
    """Pod resources per size, e.g. {"Premium": {"limits": {"nvidia.com/gpu": "1"}}}; a size not named: none."""
    kube_node_hostnames: dict[str, str] = Field(default_factory=dict)
    """The name clients use for a node's render pods, per node; a node not named: its ExternalIP, else InternalIP."""
    kube_sts_secret: str = "openrr-sts-public"
    """The Secret (written by the control plane at start) that carries the STS public key to render pods."""
    kube_extra_volumes: list[KubeHostVolume] = Field(default_factory=list)
    """Node directories every render pod mounts (read-only unless said), e.g. drivers an image takes from the host;
    checked against the pod's own volumes at start (hosting/kube_pod.py)."""

    @model_validator(mode="after")
    def _orphan_timeout_outlasts_keep_alive(self) -> Settings:
        # Warm servers hear from the control plane only at maintenance (every 5 passes; with a shared backend, from
        # the replica holding the maintenance lease, which another takes over after session_lease_s): a shorter
        # timeout would have a live control plane's servers stop themselves.
        least = 2 * 5 * self.reconcile_interval_s + (self.session_lease_s if self.hosting == "kubernetes" else 0)
        if 0 < self.render_orphan_timeout_s < least:
            raise ValueError(
                f"render_orphan_timeout_s ({self.render_orphan_timeout_s:g}) must be at least {least:g} s: two "
                "maintenance periods (10 reconcile intervals), plus session_lease_s with hosting kubernetes; 0: never"
            )
        return self

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "openrr.db"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"

    @property
    def tls_dir(self) -> Path:
        return self.ca_dir or self.data_dir / "tls"

    @property
    def cert_path(self) -> Path:
        """The local CA's certificate: the file clients trust (REQUESTS_CA_BUNDLE, --ca-cert)."""
        return self.tls_dir / "cert.pem"

    @property
    def ca_key_path(self) -> Path:
        """The local CA's key; never leaves the control plane."""
        return self.tls_dir / "ca-key.pem"

    @property
    def server_cert_path(self) -> Path:
        """The control plane's leaf certificate chain, signed by the local CA; this replica's own, in DATA_DIR/tls
        even when the CA is shared in `ca_dir` (read-only: a Kubernetes Secret)."""
        return self.data_dir / "tls" / "server.pem"

    @property
    def server_key_path(self) -> Path:
        return self.data_dir / "tls" / "server-key.pem"

    @property
    def served_cert_path(self) -> Path:
        """The certificate chain the control plane serves: the operator's (--tls-cert) or the local CA's leaf."""
        return self.tls_cert or self.server_cert_path

    @property
    def served_key_path(self) -> Path:
        return self.tls_key or self.server_key_path

    @property
    def tls_hostnames(self) -> list[str]:
        """Names the local CA may vouch for and the control plane's leaf covers (localhost and loopback always)."""
        return [self.host, self.public_render_hostname, *self.extra_hostnames]

    @property
    def sts_public_key_path(self) -> Path:
        return self.data_dir / "sts-public.pem"

    @property
    def hosts_dir(self) -> Path:
        return self.data_dir / "hosts"

    @property
    def conversions_dir(self) -> Path:
        """Scratch space of conversion workers (inputs downloaded, outputs before upload)."""
        return self.data_dir / "conversions"

    @property
    def effective_local_storage_roots(self) -> list[Path]:
        return self.local_storage_roots or [self.data_dir / "containers"]

    @property
    def secrets_key_path(self) -> Path:
        return self.data_dir / "secrets.key"

    @property
    def public_render_hostname(self) -> str:
        if self.render_hostname:
            return self.render_hostname
        if self.host in ("0.0.0.0", "::", ""):
            return socket.getfqdn()
        return self.host

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def endpoint(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def public_base(self) -> str:
        """Where clients reach this service: links in responses are built on it, never on a request's Host."""
        return (self.public_url or self.endpoint).rstrip("/")
