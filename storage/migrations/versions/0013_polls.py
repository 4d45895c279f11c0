"""Polls (issue 16): polls with their options and votes.

Two new tables (storage/poll_models.py says why they look as they do); nothing else changes.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}", ondelete=ondelete
    )


def upgrade() -> None:
    op.create_table(
        "polls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("stream_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("question", sa.String(200), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("ends_ms", sa.BigInteger(), nullable=False),
        sa.Column("ended_ms", sa.BigInteger(), nullable=True),
        sa.Column("open_channel_id", sa.Integer(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        _fk("polls", "channel_id", "channels", "CASCADE"),
        _fk("polls", "stream_id", "streams", "SET NULL"),
        _fk("polls", "created_by", "users", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_polls"),
        sa.UniqueConstraint("open_channel_id", name="uq_polls_open_channel_id"),
    )
    op.create_index("ix_polls_channel_id_id", "polls", ["channel_id", "id"])
    op.create_index("ix_polls_stream_id", "polls", ["stream_id"])
    op.create_table(
        "poll_votes",
        sa.Column("poll_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("option", sa.SmallInteger(), nullable=False),
        sa.Column("voted_ms", sa.BigInteger(), nullable=False),
        _fk("poll_votes", "poll_id", "polls", "CASCADE"),
        _fk("poll_votes", "user_id", "users", "CASCADE"),
        sa.PrimaryKeyConstraint("poll_id", "user_id", name="pk_poll_votes"),
    )


def downgrade() -> None:
    op.drop_table("poll_votes")
    op.drop_index("ix_polls_stream_id", table_name="polls")
    op.drop_index("ix_polls_channel_id_id", table_name="polls")
    op.drop_table("polls")
