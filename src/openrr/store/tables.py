"""The tables. Column changes need an Alembic revision under migrations/versions."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from openrr.store.types import UTCDateTime


class Base(DeclarativeBase):
    pass


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    """Lower-case GUID."""
    domain: Mapped[str] = mapped_column(String(255))
    primary_key_hash: Mapped[str] = mapped_column(String(64))
    secondary_key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class SigningKeyRow(Base):
    """STS signing keys live in the store so that every replica signs and verifies with the same key."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_pem: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class SessionRow(Base):
    __tablename__ = "sessions"

    account_id: Mapped[str] = mapped_column(String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    size: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    requested_lease_minutes: Mapped[int] = mapped_column(Integer)
    """The lease asked for at creation: an identical retried create compares against it."""
    max_lease_minutes: Mapped[int] = mapped_column(Integer)
    creation_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ready_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    host_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    """Opaque handle of the render server, owned by the hosting backend."""
    hostname: Mapped[str | None] = mapped_column(String(255), nullable=True)
    handshake_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    inspector_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host_released: Mapped[bool] = mapped_column(default=False)
    """True once the render server of an ended session is known to be gone."""
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The replica driving the session (Settings.replica_id); another takes over once `heartbeat` is older than the
    session lease. None: handed over (a clean shutdown with servers that outlive it)."""
    heartbeat: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 (SQLAlchemy reads it as is)
    __table_args__ = (Index("ix_sessions_account_created", "account_id", "creation_time", "id"),)


class SessionQuotaRow(Base):
    """An operator's per-account limit on live (Starting + Ready) sessions of one size.

    No row means the default: the size's capacity minus one (at least 1), so no single account can hold a whole size.
    """

    __tablename__ = "session_quotas"

    account_id: Mapped[str] = mapped_column(String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    size: Mapped[str] = mapped_column(String(16), primary_key=True)
    sessions: Mapped[int] = mapped_column(Integer)


class LeaseRow(Base):
    """Who runs a job that one replica at a time must run (store/leases.py), until when."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    expires: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ConversionRow(Base):
    __tablename__ = "conversions"

    account_id: Mapped[str] = mapped_column(String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    settings_json: Mapped[str] = mapped_column(Text)
    """The normalised settings as the API echoes them (never a SAS token)."""
    access: Mapped[str] = mapped_column(String(32))
    """How each container is reached, `input/output` of sas|linked|local: part of what a retried create compares."""
    secrets: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """The SAS tokens, encrypted; dropped once the conversion has ended."""
    creation_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    start_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The control plane running it; another takes over once `heartbeat` is older than the lease."""
    heartbeat: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    warnings_json: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_conversions_account_created", "account_id", "creation_time", "id"),)


class StorageLinkRow(Base):
    """Credentials of a blob storage account linked to an openrr account (ARR's "linked storage")."""

    __tablename__ = "storage_links"

    account_id: Mapped[str] = mapped_column(String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    blob_endpoint: Mapped[str] = mapped_column(String(512), primary_key=True)
    """e.g. https://name.blob.core.windows.net, no trailing slash."""
    storage_account: Mapped[str] = mapped_column(String(64))
    account_key: Mapped[bytes] = mapped_column(LargeBinary)
    """Encrypted; never returned by any API."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
