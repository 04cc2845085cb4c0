"""The service objects one control-plane process holds, wired together."""

from __future__ import annotations

from dataclasses import dataclass

from openrr.accounts.auth import Authenticator
from openrr.accounts.service import AccountService
from openrr.accounts.storage_links import StorageLinks
from openrr.accounts.sts import TokenService
from openrr.config import Settings
from openrr.conversions.runner import ConversionRunner, RunnerConfig
from openrr.conversions.service import ConversionService
from openrr.hosting.backend import HostingBackend
from openrr.hosting.factory import build_backend
from openrr.metrics.control_plane import ControlPlaneMetrics
from openrr.sessions.reconciler import Reconciler
from openrr.sessions.service import SessionService
from openrr.storage.session_access import StorageGrants
from openrr.store.db import Database, open_database
from openrr.store.secretbox import SecretBox
from openrr.store.shared_key import require_shared_secrets_key
from openrr.util.child_process import child_identity


@dataclass
class Services:
    settings: Settings
    db: Database
    accounts: AccountService
    tokens: TokenService
    sessions: SessionService
    backend: HostingBackend
    reconciler: Reconciler
    auth: Authenticator
    links: StorageLinks
    conversions: ConversionService
    conversion_runner: ConversionRunner | None
    """None where this control plane runs no conversions (conversion_workers = 0)."""
    metrics: ControlPlaneMetrics


def build_services(settings: Settings) -> Services:
    db = open_database(settings)
    accounts = AccountService(db)
    box = secret_box(settings)
    tokens = TokenService(db, settings.token_lifetime_s, box)
    tokens.write_public_key(settings.sts_public_key_path)
    kick: list[Reconciler] = []
    # Refuse to start with a key other replicas' credentials do not open (they share the database).
    require_shared_secrets_key(db, box)
    sessions = SessionService(
        db,
        settings.capacity,
        on_change=lambda: kick[0].kick() if kick else None,
        replica_id=settings.replica_id,
        lease_s=settings.session_lease_s,
    )
    links = StorageLinks(db, box)
    # Sessions read the blobs of their account's linked storage with tokens the backend hands their servers.
    # ... and the account's current key ids, so that they refuse tokens of rotated keys and deleted accounts.
    backend = build_backend(settings, StorageGrants(links), accounts.token_key_ids)
    reconciler = Reconciler(
        sessions,
        backend,
        interval_s=settings.reconcile_interval_s,
        start_timeout_s=settings.start_timeout_s,
        retention_days=settings.retention_days,
    )
    kick.append(reconciler)
    metrics = ControlPlaneMetrics(db, backend)
    reconciler.observe_start = metrics.observe_start
    runners: list[ConversionRunner] = []
    conversions = ConversionService(
        db,
        links.box,
        links,
        settings.effective_local_storage_roots,
        on_change=lambda: runners[0].kick() if runners else None,
    )
    if settings.conversion_workers > 0:
        runners.append(ConversionRunner(conversions, runner_config(settings)))
    return Services(
        settings,
        db,
        accounts,
        tokens,
        sessions,
        backend,
        reconciler,
        Authenticator(tokens, accounts),
        links=links,
        conversions=conversions,
        conversion_runner=runners[0] if runners else None,
        metrics=metrics,
    )


def secret_box(settings: Settings) -> SecretBox:
    return SecretBox.from_settings(settings.secrets_key, settings.secrets_key_path)


def runner_config(settings: Settings) -> RunnerConfig:
    return RunnerConfig(
        workers=settings.conversion_workers,
        attempts=settings.conversion_attempts,
        lease_s=settings.conversion_lease_s,
        nice=settings.conversion_nice,
        work_root=settings.conversions_dir / "work",
        local_roots=settings.effective_local_storage_roots,
        max_input_bytes=settings.conversion_max_input_bytes,
        interval_s=settings.reconcile_interval_s,
        retention_days=settings.retention_days,
        timeout_s=settings.conversion_timeout_s,
        fetch_allow=tuple(settings.fetch_allow),
        child=child_identity(settings.child_user),
    )
