"""Chat moderation state: who moderates a channel, who is banned or timed out, and the
channel's chat rules (slow mode, followers-only, logged-in-only, word filter).

Messages, blocks, reports and channel follows live in ``storage.models``; these tables are
the chat's own and share its ``Base`` (and naming convention) so one metadata describes the
whole schema and the migration test compares all of it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, false, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow

FILTER_MODES = ("mask", "reject")


class ChannelModerator(Base):
    """A user the channel owner appointed to moderate the channel's chat."""

    __tablename__ = "channel_moderators"

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    appointed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChannelBan(Base):
    """A user banned from a channel's chat until unbanned."""

    __tablename__ = "channel_bans"

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    banned_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChannelTimeout(Base):
    """A user who may not write in a channel's chat until ``until`` (one row per pair)."""

    __tablename__ = "channel_timeouts"

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    until: Mapped[datetime]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChatSettings(Base):
    """A channel's chat rules; a channel without a row has the defaults (all off)."""

    __tablename__ = "chat_settings"

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    # Seconds a user must wait between two messages (0: off). Moderators are exempt.
    slow_mode_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Only followers of the channel (and its owner, moderators, admins) may write.
    followers_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Only logged-in users may read the room (anonymous sockets get an error, no messages).
    logged_in_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Words (case-insensitive) the filter acts on; ``filter_mode`` mask (****) or reject.
    word_filter: Mapped[list[str]] = mapped_column(JSON, default=list)
    filter_mode: Mapped[str] = mapped_column(String(8), default="mask", server_default="mask")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


__all__ = ["ChannelModerator", "ChannelBan", "ChannelTimeout", "ChatSettings", "FILTER_MODES"]
