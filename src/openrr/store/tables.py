"""The tables. Column changes need an Alembic revision under migrations/versions."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
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
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 (SQLAlchemy reads it as is)
    __table_args__ = (Index("ix_sessions_account_created", "account_id", "creation_time", "id"),)
