"""Emotes (issue 16): global and per-channel emote codes and their images.

Only a new table (``storage/emote_models.py``): a row without a channel is a global emote.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "emotes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=True),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("file_key", sa.String(length=32), nullable=False),
        sa.Column("animated", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("follower_only", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name="fk_emotes_channel_id_channels",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name="fk_emotes_created_by_id_users",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_emotes"),
        sa.UniqueConstraint("channel_id", "code", name="uq_emotes_channel_id_code"),
    )
    op.create_index("ix_emotes_channel_id", "emotes", ["channel_id"])
    op.create_index(
        "uq_emotes_global_code",
        "emotes",
        ["code"],
        unique=True,
        sqlite_where=sa.text("channel_id IS NULL"),
        postgresql_where=sa.text("channel_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_emotes_global_code", table_name="emotes")
    op.drop_index("ix_emotes_channel_id", table_name="emotes")
    op.drop_table("emotes")
