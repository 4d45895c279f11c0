"""Restreaming destinations (issue 14): one row per place a channel relays its live stream.

Only a new table: nothing is rebuilt, 0007's search triggers are untouched.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "restream_destinations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("preset", sa.String(length=16), server_default="custom", nullable=False),
        sa.Column("ingest_url", sa.String(length=1024), nullable=False),
        sa.Column("stream_key", sa.String(length=512), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("source", sa.String(length=32), server_default="original", nullable=False),
        sa.Column("ca_file", sa.String(length=1024), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name="fk_restream_destinations_channel_id_channels",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_restream_destinations"),
    )
    op.create_index("ix_restream_destinations_channel_id", "restream_destinations", ["channel_id"])


def downgrade() -> None:
    op.drop_index("ix_restream_destinations_channel_id", table_name="restream_destinations")
    op.drop_table("restream_destinations")
