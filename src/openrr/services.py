"""The service objects one control-plane process holds, wired together."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from openrr.accounts.service import AccountService
from openrr.accounts.sts import TokenService
from openrr.config import Settings
from openrr.hosting.factory import build_backend
from openrr.http.auth import Authenticator
from openrr.sessions.reconciler import ClosableBackend, Reconciler
from openrr.sessions.service import SessionService
from openrr.store.db import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    accounts: AccountService
    tokens: TokenService
    sessions: SessionService
    backend: ClosableBackend
    reconciler: Reconciler
    auth: Authenticator


def open_database(settings: Settings) -> Database:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.effective_database_url)
    db.migrate()
    return db


def build_services(settings: Settings) -> Services:
    db = open_database(settings)
    accounts = AccountService(db)
    tokens = TokenService(db, settings.token_lifetime_s)
    tokens.write_public_key(settings.sts_public_key_path)
    kick: list[Reconciler] = []
    sessions = SessionService(db, settings.capacity, on_change=lambda: kick[0].kick() if kick else None)
    backend = build_backend(settings)
    reconciler = Reconciler(
        sessions,
        backend,
        interval_s=settings.reconcile_interval_s,
        start_timeout_s=settings.start_timeout_s,
        retention_days=settings.retention_days,
    )
    kick.append(reconciler)
    return Services(settings, db, accounts, tokens, sessions, backend, reconciler, Authenticator(tokens, accounts))


def services_of(request: Request) -> Services:
    services = request.app.state.services
    assert isinstance(services, Services)
    return services
