"""Settings of the service from command-line flags (over `OPENRR_*` variables and defaults), as `openrr serve`
and the admin commands (`openrr account ...`) read them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openrr.config import Settings


def size_map(text: str, *, bytes_: bool = False) -> dict[str, int]:
    """`Standard=2,Premium=1` -> {"Standard": 2, "Premium": 1}."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected SIZE=N, got {part!r}")
        canonical = {"standard": "Standard", "premium": "Premium"}.get(name.strip().lower())
        if canonical is None:
            raise argparse.ArgumentTypeError(f"unknown size {name!r} (Standard or Premium)")
        out[canonical] = _bytes(value) if bytes_ else int(value)
    return out


def size_bytes_map(text: str) -> dict[str, int]:
    """`Standard=8G,Premium=16G` -> bytes per size (suffixes K, M, G: powers of 1024)."""
    return size_map(text, bytes_=True)


def _bytes(text: str) -> int:
    text = text.strip()
    scale = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(text[-1:].lower(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def settings_from(args: argparse.Namespace) -> Settings:
    # Imported here, not above: building the parser must not load pydantic-settings (start-up time of every command).
    from openrr.config import Settings

    overrides: dict[str, Any] = {}
    for name in (
        "data_dir",
        "host",
        "port",
        "database_url",
        "render_hostname",
        "rate_limit_per_s",
        "rate_limit_burst",
        "reconcile_interval_s",
        "stop_grace_s",
        "standard_primitive_limit",
        "conversion_workers",
        "conversion_lease_s",
        "tls_cert",
        "tls_key",
        "public_url",
        "handshake_timeout_s",
        "keep_alive_timeout_s",
        "render_orphan_timeout_s",
        "max_connections",
        "child_user",
        "texture_max_dimension",
        "texture_max_pixels",
        "model_max_bytes",
        "model_max_compression_ratio",
        "replica_id",
        "session_lease_s",
        "ca_dir",
        "hosting",
        "kubeconfig",
    ):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "no_tls", False):
        overrides["tls"] = False
    if getattr(args, "local_storage_root", None):
        overrides["local_storage_roots"] = args.local_storage_root
    if getattr(args, "local_models", None) is not None:
        overrides["local_models"] = args.local_models == "on"
    if getattr(args, "fetch_allow", None):
        overrides["fetch_allow"] = ",".join(args.fetch_allow)
    defaults = Settings(**overrides)
    for name in ("warm_pool", "capacity", "render_memory_limit"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = {**getattr(defaults, name), **value}
    return Settings(**overrides)


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="data directory (env OPENRR_DATA_DIR)")
    p.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data directory)")
