"""Raids and chat extras (issue 16): who may raid a channel, the raids made, typing indicators.

Two new tables: ``channel_extras`` (a channel's raid policy and typing-indicator switch; no
row means the defaults) and ``raids`` (who raided whom, with how many viewers, when).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channel_extras",
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("raid_policy", sa.String(length=16), server_default="anyone", nullable=False),
        sa.Column("typing_indicators", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name="fk_channel_extras_channel_id_channels",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("channel_id", name="pk_channel_extras"),
    )
    op.create_table(
        "raids",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("from_channel_id", sa.Integer(), nullable=False),
        sa.Column("to_channel_id", sa.Integer(), nullable=False),
        sa.Column("by_user_id", sa.Integer(), nullable=True),
        sa.Column("viewers", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["from_channel_id"],
            ["channels.id"],
            name="fk_raids_from_channel_id_channels",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["to_channel_id"],
            ["channels.id"],
            name="fk_raids_to_channel_id_channels",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["by_user_id"], ["users.id"], name="fk_raids_by_user_id_users", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_raids"),
    )
    op.create_index(
        "ix_raids_from_channel_id_created_at", "raids", ["from_channel_id", "created_at"]
    )
    op.create_index("ix_raids_to_channel_id_created_at", "raids", ["to_channel_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_raids_to_channel_id_created_at", table_name="raids")
    op.drop_index("ix_raids_from_channel_id_created_at", table_name="raids")
    op.drop_table("raids")
    op.drop_table("channel_extras")
