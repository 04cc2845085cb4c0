"""Accounts, STS signing keys and sessions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from openrr.store.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("primary_key_hash", sa.String(64), nullable=False),
        sa.Column("secondary_key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("private_pem", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("id", sa.String(256), primary_key=True),
        sa.Column("size", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_lease_minutes", sa.Integer(), nullable=False),
        sa.Column("max_lease_minutes", sa.Integer(), nullable=False),
        sa.Column("creation_time", UTCDateTime(), nullable=False),
        sa.Column("ready_time", UTCDateTime(), nullable=True),
        sa.Column("end_time", UTCDateTime(), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("host_ref", sa.String(128), nullable=True),
        sa.Column("hostname", sa.String(255), nullable=True),
        sa.Column("handshake_port", sa.Integer(), nullable=True),
        sa.Column("inspector_port", sa.Integer(), nullable=True),
        sa.Column("host_released", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
    )
    op.create_index("ix_sessions_status", "sessions", ["status"])
    op.create_index("ix_sessions_account_created", "sessions", ["account_id", "creation_time", "id"])


def downgrade() -> None:
    op.drop_table("sessions")
    op.drop_table("signing_keys")
    op.drop_table("accounts")
