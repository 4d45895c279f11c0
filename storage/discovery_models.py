"""Tables of the platform around the live moment: the category catalogue, who watched what
(watch history, which recommendations read), in-app notifications with each user's email
preferences, and a channel's outgoing webhooks with their deliveries.

They share ``models.Base`` (and its naming convention) so one metadata describes the whole
schema and the migration test compares all of it, like ``storage.chat_models``.

Deliveries and notifications are rows, not in-memory queues, so a crash between "the stream
went live" and "the receiver got it" loses nothing: the sender picks up what is still due.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, false, text, true
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow

WEBHOOK_EVENTS = ("stream.online", "stream.offline", "channel.follow")
WEBHOOK_FORMATS = ("json", "discord")
DELIVERY_STATES = ("pending", "succeeded", "failed")


class Category(Base):
    """An entry of the catalogue a channel picks its category from. Retiring hides it from
    pickers and from ``/categories`` without breaking the channels and past broadcasts that
    still point at it."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # Path of the box-art image under the upload store (webapp.images), or NULL.
    box_art_path: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]


class WatchSession(Base):
    """One logged-in viewer's playback of one channel: what history and recommendations read.
    Anonymous playback is never attributed to anyone."""

    __tablename__ = "watch_sessions"
    __table_args__ = (
        Index("ix_watch_sessions_user_id_started_at", "user_id", "started_at"),
        Index("ix_watch_sessions_channel_id_user_id", "channel_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    stream_id: Mapped[int | None] = mapped_column(ForeignKey("streams.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    watched_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class Notification(Base):
    """An in-app notification (a followed channel went live, ...). ``emailed_at`` marks the ones
    an email (single or digest) already covered, so a restart never mails one twice."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user_id_created_at", "user_id", "created_at"),
        Index("ix_notifications_user_id_read_at", "user_id", "read_at"),
        Index("ix_notifications_created_at", "created_at"),
        # The email sender's queue: only the rows still owed an email, oldest first.
        Index(
            "ix_notifications_email_due",
            "id",
            sqlite_where=text("emailed_at IS NULL"),
            postgresql_where=text("emailed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    stream_id: Mapped[int | None] = mapped_column(ForeignKey("streams.id", ondelete="SET NULL"))
    # What the list shows (channel name and slug, stream title) as it was when it happened.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]
    emailed_at: Mapped[datetime | None]
    # Held by a sender mailing it until then; past it (the sender crashed) it is due again.
    email_claimed_until: Mapped[datetime | None]


class NotificationSettings(Base):
    """A user's email preferences. No row means the defaults (go-live emails on, no digest)."""

    __tablename__ = "notification_settings"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    email_go_live: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    email_digest: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_digest_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Webhook(Base):
    """An endpoint a creator registered for their channel's events."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    # The HMAC-SHA256 key; shown to the owner, who verifies X-AeThex-Signature with it.
    secret: Mapped[str] = mapped_column(String(128))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    # "json" (our signed document) or "discord" (a Discord webhook message).
    payload_format: Mapped[str] = mapped_column(String(16), default="json", server_default="json")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event owed to one webhook: retried with backoff until it succeeds or runs out of
    attempts; the dashboard lists the latest and can queue one again."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook_id_created_at", "webhook_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


__all__ = [
    "WEBHOOK_EVENTS",
    "WEBHOOK_FORMATS",
    "DELIVERY_STATES",
    "Category",
    "WatchSession",
    "Notification",
    "NotificationSettings",
    "Webhook",
    "WebhookDelivery",
]
