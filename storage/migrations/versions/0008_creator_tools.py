"""Creator tools: the video library's fields on past broadcasts (description, visibility,
pinned, deleted, views, size on disk), a channel's retention, download and clip settings,
chapters, views counted once per viewer session, and clips.

Columns are added with plain ``ADD COLUMN`` (no batch rebuild), so the search triggers of
0007 on ``channels`` and ``streams`` stay in place on SQLite.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL_COLUMNS: tuple[sa.Column[object], ...] = (
    sa.Column("retention_days", sa.Integer(), nullable=True),
    sa.Column("retention_max_gb", sa.Float(), nullable=True),
    sa.Column("allow_downloads", sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column("allow_vod_clips", sa.Boolean(), server_default=sa.false(), nullable=False),
)
STREAM_COLUMNS: tuple[sa.Column[object], ...] = (
    sa.Column("description", sa.Text(), server_default=sa.text("''"), nullable=False),
    sa.Column("visibility", sa.String(16), server_default="public", nullable=False),
    sa.Column("pinned", sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("views", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    sa.Column("size_bytes", sa.BigInteger(), nullable=True),
)


def _created() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    for column in CHANNEL_COLUMNS:
        op.add_column("channels", column)
    for column in STREAM_COLUMNS:
        op.add_column("streams", column)

    op.create_table(
        "stream_chapters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stream_id", sa.Integer(), nullable=False),
        sa.Column("offset_seconds", sa.Float(), nullable=False),
        sa.Column("title", sa.String(140), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=True),
        sa.Column("category_name", sa.String(64), nullable=True),
        _created(),
        sa.ForeignKeyConstraint(
            ["stream_id"],
            ["streams.id"],
            name="fk_stream_chapters_stream_id_streams",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["categories.id"],
            name="fk_stream_chapters_category_id_categories",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_stream_chapters"),
    )
    op.create_index(
        "ix_stream_chapters_stream_id_offset_seconds",
        "stream_chapters",
        ["stream_id", "offset_seconds"],
    )

    op.create_table(
        "media_views",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("ref_id", sa.Integer(), nullable=False),
        sa.Column("viewer_key", sa.String(64), nullable=False),
        _created(),
        sa.PrimaryKeyConstraint("id", name="pk_media_views"),
    )
    op.create_index(
        "uq_media_views_kind_ref_id_viewer_key",
        "media_views",
        ["kind", "ref_id", "viewer_key"],
        unique=True,
    )
    op.create_index("ix_media_views_created_at", "media_views", ["created_at"])

    op.create_table(
        "clips",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("stream_id", sa.Integer(), nullable=True),
        sa.Column("clipper_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(140), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), server_default="draft", nullable=False),
        sa.Column("start_seconds", sa.Float(), nullable=False),
        sa.Column("end_seconds", sa.Float(), nullable=False),
        sa.Column("path", sa.String(512), nullable=True),
        sa.Column("thumbnail_path", sa.String(512), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("views", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _created(),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name="fk_clips_channel_id_channels", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["stream_id"], ["streams.id"], name="fk_clips_stream_id_streams", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["clipper_id"], ["users.id"], name="fk_clips_clipper_id_users", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_clips"),
    )
    op.create_index("uq_clips_public_id", "clips", ["public_id"], unique=True)
    op.create_index("ix_clips_channel_id_created_at", "clips", ["channel_id", "created_at"])
    op.create_index("ix_clips_clipper_id_created_at", "clips", ["clipper_id", "created_at"])
    op.create_index("ix_clips_stream_id", "clips", ["stream_id"])


def downgrade() -> None:
    op.drop_table("clips")
    op.drop_table("media_views")
    op.drop_table("stream_chapters")
    # Plain DROP COLUMN (SQLite 3.35+), again without a rebuild that would drop 0007's triggers.
    for column in reversed(STREAM_COLUMNS):
        op.drop_column("streams", column.name)
    for column in reversed(CHANNEL_COLUMNS):
        op.drop_column("channels", column.name)
