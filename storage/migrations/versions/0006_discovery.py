"""Discovery and notifications: the category catalogue (with a starter set, and the free-text
categories already in use moved into it), a channel's language, the follow bell, watch
history, in-app notifications with email preferences, and outgoing webhooks.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What a fresh server offers before an admin edits the catalogue.
STARTER_CATEGORIES = (
    "Just Chatting",
    "Gaming",
    "Retro Gaming",
    "Speedrunning",
    "Music",
    "Art",
    "Software Development",
    "Science & Technology",
    "Education",
    "Talk Shows & Podcasts",
    "Sports & Fitness",
    "Food & Drink",
    "Travel & Outdoors",
    "Makers & Crafting",
)


def category_slug(name: str, taken: set[str]) -> str:
    """A URL slug for a category name, unique among ``taken`` (which it extends)."""
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:56] or "category"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    return slug


def _add_category_reference(table: str) -> None:
    """``{table}.category_id`` referencing ``categories`` with ON DELETE SET NULL (a batch
    rebuild on SQLite, which env.py runs with foreign keys off so no child row is lost)."""
    with op.batch_alter_table(table) as batch:
        batch.add_column(sa.Column("category_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            f"fk_{table}_category_id_categories",
            "categories",
            ["category_id"],
            ["id"],
            ondelete="SET NULL",
        )


def _created(table: str) -> sa.Column[datetime]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "categories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("box_art_path", sa.String(512), nullable=True),
        _created("categories"),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_categories"),
        sa.UniqueConstraint("slug", name="uq_categories_slug"),
        sa.UniqueConstraint("name", name="uq_categories_name"),
    )
    _add_category_reference("channels")
    op.add_column("channels", sa.Column("language", sa.String(16), nullable=True))
    op.create_index("ix_channels_category_id", "channels", ["category_id"])
    op.create_index("ix_channels_language", "channels", ["language"])
    _add_category_reference("streams")
    op.create_index("ix_streams_category_id_started_at", "streams", ["category_id", "started_at"])
    op.add_column(
        "channel_follows",
        sa.Column("notify", sa.Boolean(), server_default=sa.true(), nullable=False),
    )
    _fill_categories()

    op.create_table(
        "watch_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("stream_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("watched_seconds", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_watch_sessions_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name="fk_watch_sessions_channel_id_channels",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["stream_id"],
            ["streams.id"],
            name="fk_watch_sessions_stream_id_streams",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_watch_sessions"),
    )
    op.create_index(
        "ix_watch_sessions_user_id_started_at", "watch_sessions", ["user_id", "started_at"]
    )
    op.create_index(
        "ix_watch_sessions_channel_id_user_id", "watch_sessions", ["channel_id", "user_id"]
    )

    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=True),
        sa.Column("stream_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        _created("notifications"),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("emailed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("email_claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_notifications_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name="fk_notifications_channel_id_channels",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["stream_id"],
            ["streams.id"],
            name="fk_notifications_stream_id_streams",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
    )
    op.create_index(
        "ix_notifications_user_id_created_at", "notifications", ["user_id", "created_at"]
    )
    op.create_index("ix_notifications_user_id_read_at", "notifications", ["user_id", "read_at"])
    op.create_index("ix_notifications_created_at", "notifications", ["created_at"])
    op.create_index(
        "ix_notifications_email_due",
        "notifications",
        ["id"],
        sqlite_where=sa.text("emailed_at IS NULL"),
        postgresql_where=sa.text("emailed_at IS NULL"),
    )
    op.create_index(
        "ix_channel_follows_channel_id_user_id", "channel_follows", ["channel_id", "user_id"]
    )

    op.create_table(
        "notification_settings",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("email_go_live", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("email_digest", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("last_digest_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_notification_settings_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name="pk_notification_settings"),
    )

    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("payload_format", sa.String(16), server_default="json", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        _created("webhooks"),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name="fk_webhooks_channel_id_channels",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhooks"),
    )
    op.create_index("ix_webhooks_channel_id", "webhooks", ["channel_id"])

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(512), nullable=True),
        _created("webhook_deliveries"),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name="fk_webhook_deliveries_webhook_id_webhooks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
    )
    op.create_index(
        "ix_webhook_deliveries_status_next_attempt_at",
        "webhook_deliveries",
        ["status", "next_attempt_at"],
    )
    op.create_index(
        "ix_webhook_deliveries_webhook_id_created_at",
        "webhook_deliveries",
        ["webhook_id", "created_at"],
    )


def _fill_categories() -> None:
    """The starter set, plus every free-text category already in use (matched to a starter
    entry without regard to case), then each channel and stream pointed at its entry."""
    conn = op.get_bind()
    now = datetime.now(UTC)
    used = {
        row[0].strip()
        for table in ("channels", "streams")
        for row in conn.execute(sa.text(f"SELECT DISTINCT category FROM {table}"))
        if row[0] and row[0].strip()
    }
    by_key: dict[str, str] = {}
    for name in (*STARTER_CATEGORIES, *sorted(used)):
        by_key.setdefault(name.casefold(), name[:64])
    taken: set[str] = set()
    for name in by_key.values():
        conn.execute(
            sa.text(
                "INSERT INTO categories (slug, name, description, created_at) "
                "VALUES (:slug, :name, '', :now)"
            ),
            {"slug": category_slug(name, taken), "name": name, "now": now},
        )
    ids = {
        str(name).casefold(): cid
        for cid, name in conn.execute(sa.text("SELECT id, name FROM categories"))
    }
    for table in ("channels", "streams"):
        rows = conn.execute(
            sa.text(f"SELECT id, category FROM {table} WHERE category IS NOT NULL")
        ).all()
        for row_id, category in rows:
            category_id = ids.get(str(category).strip().casefold())
            if category_id is not None:
                conn.execute(
                    sa.text(f"UPDATE {table} SET category_id = :cid WHERE id = :id"),
                    {"cid": category_id, "id": row_id},
                )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    op.drop_table("notification_settings")
    op.drop_index("ix_channel_follows_channel_id_user_id", table_name="channel_follows")
    op.drop_table("notifications")
    op.drop_table("watch_sessions")
    with op.batch_alter_table("channel_follows") as batch:
        batch.drop_column("notify")
    with op.batch_alter_table("streams") as batch:
        batch.drop_index("ix_streams_category_id_started_at")
        batch.drop_constraint("fk_streams_category_id_categories", type_="foreignkey")
        batch.drop_column("category_id")
    with op.batch_alter_table("channels") as batch:
        batch.drop_index("ix_channels_language")
        batch.drop_index("ix_channels_category_id")
        batch.drop_constraint("fk_channels_category_id_categories", type_="foreignkey")
        batch.drop_column("language")
        batch.drop_column("category_id")
    op.drop_table("categories")
