"""Raids and the chat extras (issue 16): a channel's raid policy and typing-indicator switch,
and the record of every raid made.

Shares ``models.Base`` so one metadata describes the whole schema, like
``storage.restream_models``. A channel with no ``channel_extras`` row has the defaults
(raids from anyone, typing indicators on), so existing channels need no backfill.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, true
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow

# Who may raid a channel: anyone, only channels its owner follows, or nobody.
RAID_POLICIES = ("anyone", "followed", "nobody")
DEFAULT_RAID_POLICY = "anyone"


class ChannelExtras(Base):
    """Per-channel settings of the raid and chat-extras features."""

    __tablename__ = "channel_extras"

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    raid_policy: Mapped[str] = mapped_column(
        String(16), default=DEFAULT_RAID_POLICY, server_default=DEFAULT_RAID_POLICY
    )
    typing_indicators: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class Raid(Base):
    """One raid: ``from_channel`` sent its viewers to ``to_channel``."""

    __tablename__ = "raids"
    __table_args__ = (
        # The raiding channel's cooldown and its dashboard list read its newest raids.
        Index("ix_raids_from_channel_id_created_at", "from_channel_id", "created_at"),
        Index("ix_raids_to_channel_id_created_at", "to_channel_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    from_channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    to_channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    viewers: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
