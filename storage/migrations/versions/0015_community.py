"""Community channels (issue 16): persistent text channels, their messages, read markers.

Only new tables (storage/community_models.py): nothing existing is rebuilt.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "community_topics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), server_default="text", nullable=False),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name="fk_community_topics_channel_id_channels",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_community_topics"),
        sa.UniqueConstraint("channel_id", "name", name="uq_community_topics_channel_id_name"),
    )
    op.create_table(
        "community_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["community_topics.id"],
            name="fk_community_messages_topic_id_community_topics",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_community_messages_user_id_users",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["deleted_by_id"],
            ["users.id"],
            name="fk_community_messages_deleted_by_id_users",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_community_messages"),
    )
    op.create_index("ix_community_messages_topic_id_id", "community_messages", ["topic_id", "id"])
    op.create_index("ix_community_messages_user_id", "community_messages", ["user_id"])
    op.create_table(
        "community_reads",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("last_read_id", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_community_reads_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["community_topics.id"],
            name="fk_community_reads_topic_id_community_topics",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "topic_id", name="pk_community_reads"),
    )
    op.create_index("ix_community_reads_topic_id", "community_reads", ["topic_id"])


def downgrade() -> None:
    op.drop_index("ix_community_reads_topic_id", table_name="community_reads")
    op.drop_table("community_reads")
    op.drop_index("ix_community_messages_user_id", table_name="community_messages")
    op.drop_index("ix_community_messages_topic_id_id", table_name="community_messages")
    op.drop_table("community_messages")
    op.drop_table("community_topics")
