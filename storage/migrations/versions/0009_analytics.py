"""Analytics: raw samples of live streams, viewer sessions per broadcast and rendition, one
summary per broadcast, per-channel hourly and daily rollups, and an index on the follows'
creation time (follows gained per hour). See storage/analytics.py for the design.

Only new tables and an index: nothing is rebuilt, 0007's search triggers are untouched.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}", ondelete="CASCADE"
    )


def _bucket_table(name: str, key: str) -> None:
    op.create_table(
        name,
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("live_seconds", sa.Integer(), nullable=False),
        sa.Column("viewer_seconds", sa.BigInteger(), nullable=False),
        sa.Column("peak_viewers", sa.Integer(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("follows", sa.Integer(), nullable=False),
        sa.Column(key, sa.BigInteger(), nullable=False),
        _fk(name, "channel_id", "channels"),
        sa.PrimaryKeyConstraint("channel_id", key, name=f"pk_{name}"),
    )
    op.create_index(f"ix_{name}_{key}", name, [key])


def upgrade() -> None:
    op.create_table(
        "analytics_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stream_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("viewers", sa.Integer(), nullable=False),
        sa.Column("renditions", sa.JSON(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("chatters", sa.Integer(), nullable=False),
        sa.Column("follows", sa.Integer(), nullable=False),
        _fk("analytics_samples", "stream_id", "streams"),
        _fk("analytics_samples", "channel_id", "channels"),
        sa.PrimaryKeyConstraint("id", name="pk_analytics_samples"),
    )
    op.create_index("ix_analytics_samples_stream_id_at", "analytics_samples", ["stream_id", "at"])
    op.create_index("ix_analytics_samples_at", "analytics_samples", ["at"])

    op.create_table(
        "analytics_watch",
        sa.Column("stream_id", sa.Integer(), nullable=False),
        sa.Column("viewer_key", sa.String(32), nullable=False),
        sa.Column("rendition", sa.String(32), nullable=False),
        sa.Column("first_at", sa.BigInteger(), nullable=False),
        sa.Column("last_at", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        _fk("analytics_watch", "stream_id", "streams"),
        sa.PrimaryKeyConstraint("stream_id", "viewer_key", "rendition", name="pk_analytics_watch"),
    )
    op.create_index("ix_analytics_watch_last_at", "analytics_watch", ["last_at"])

    zero = sa.text("0")
    op.create_table(
        "analytics_streams",
        sa.Column("stream_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("last_at", sa.BigInteger(), nullable=False),
        sa.Column("live_seconds", sa.Integer(), server_default=zero, nullable=False),
        sa.Column("viewer_seconds", sa.BigInteger(), server_default=zero, nullable=False),
        sa.Column("peak_viewers", sa.Integer(), server_default=zero, nullable=False),
        sa.Column("unique_viewers", sa.Integer(), server_default=zero, nullable=False),
        sa.Column("watch_seconds", sa.BigInteger(), server_default=zero, nullable=False),
        sa.Column("messages", sa.Integer(), server_default=zero, nullable=False),
        sa.Column("chatters", sa.Integer(), server_default=zero, nullable=False),
        sa.Column("follows", sa.Integer(), server_default=zero, nullable=False),
        sa.Column("renditions", sa.JSON(), nullable=False),
        sa.Column("series", sa.JSON(), nullable=False),
        sa.Column("final", sa.Boolean(), server_default=sa.false(), nullable=False),
        _fk("analytics_streams", "stream_id", "streams"),
        _fk("analytics_streams", "channel_id", "channels"),
        sa.PrimaryKeyConstraint("stream_id", name="pk_analytics_streams"),
    )
    op.create_index(
        "ix_analytics_streams_channel_id_started_at",
        "analytics_streams",
        ["channel_id", "started_at"],
    )
    op.create_index("ix_analytics_streams_final", "analytics_streams", ["final"])

    _bucket_table("analytics_channel_hours", "hour")
    _bucket_table("analytics_channel_days", "day")

    op.create_index("ix_channel_follows_created_at", "channel_follows", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_channel_follows_created_at", table_name="channel_follows")
    op.drop_table("analytics_channel_days")
    op.drop_table("analytics_channel_hours")
    op.drop_table("analytics_streams")
    op.drop_table("analytics_watch")
    op.drop_table("analytics_samples")
