"""Chat moderation: channel moderators, bans, timeouts and per-channel chat settings.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import SchemaItem

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _pair(table: str) -> list[SchemaItem]:
    """The (channel, user) primary key both cascade-deleted with their channel and user."""
    return [
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=f"fk_{table}_channel_id_channels",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("channel_id", "user_id", name=f"pk_{table}"),
    ]


def upgrade() -> None:
    op.create_table(
        "channel_moderators",
        *_pair("channel_moderators"),
        sa.Column("appointed_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["appointed_by_id"],
            ["users.id"],
            name="fk_channel_moderators_appointed_by_id_users",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_channel_moderators_user_id", "channel_moderators", ["user_id"])

    op.create_table(
        "channel_bans",
        *_pair("channel_bans"),
        sa.Column("banned_by_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["banned_by_id"],
            ["users.id"],
            name="fk_channel_bans_banned_by_id_users",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_channel_bans_user_id", "channel_bans", ["user_id"])

    op.create_table(
        "channel_timeouts",
        *_pair("channel_timeouts"),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name="fk_channel_timeouts_created_by_id_users",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_channel_timeouts_user_id", "channel_timeouts", ["user_id"])

    op.create_table(
        "chat_settings",
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("slow_mode_seconds", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("followers_only", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("logged_in_only", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("word_filter", sa.JSON(), nullable=False),
        sa.Column("filter_mode", sa.String(8), server_default="mask", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name="fk_chat_settings_channel_id_channels",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("channel_id", name="pk_chat_settings"),
    )


def downgrade() -> None:
    op.drop_table("chat_settings")
    op.drop_table("channel_timeouts")
    op.drop_table("channel_bans")
    op.drop_table("channel_moderators")
