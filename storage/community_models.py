"""Community channels (issue 16): a creator's persistent text topics beside the live chat,
their messages, and where each user last read each topic.

Shares ``models.Base`` so one metadata describes the whole schema, like
``storage.chat_models``. Messages are soft-deleted (``deleted_at``) like chat messages, to keep
evidence; every reader skips them. The read marker is the id of the newest message the user
has seen: a topic's unread count is its messages above that id.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow

# A topic anyone allowed to chat may write in, or one only the owner, moderators and admins
# may write in (everyone reads it).
KINDS = ("text", "announcements")
# Topic names: lower-case letters, digits, "-" and "_", shown as #name.
NAME_MAX = 32


class CommunityTopic(Base):
    """One of a channel's text channels (#general, #clips...), in the owner's order."""

    __tablename__ = "community_topics"
    __table_args__ = (UniqueConstraint("channel_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    kind: Mapped[str] = mapped_column(String(16), default="text", server_default="text")
    position: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CommunityMessage(Base):
    """A message in a topic; history is paged newest first by id."""

    __tablename__ = "community_messages"
    __table_args__ = (Index("ix_community_messages_topic_id_id", "topic_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("community_topics.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]
    deleted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class CommunityRead(Base):
    """Where ``user_id`` last read ``topic_id``: the newest message id they have seen."""

    __tablename__ = "community_reads"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    topic_id: Mapped[int] = mapped_column(
        ForeignKey("community_topics.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    last_read_id: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


__all__ = ["KINDS", "NAME_MAX", "CommunityMessage", "CommunityRead", "CommunityTopic"]
