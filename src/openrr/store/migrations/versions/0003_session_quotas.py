"""Per-account quotas of live sessions per size.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_quotas",
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("size", sa.String(16), primary_key=True),
        sa.Column("sessions", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("session_quotas")
