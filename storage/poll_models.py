"""Tables of live polls (issue 16): a poll a channel's owner or moderator runs in its chat, and
one vote per user per poll.

Times are milliseconds since the epoch (UTC) in ``BigInteger`` columns: a vote is accepted
only while ``now < ends_ms``, the same integer comparison on SQLite and PostgreSQL.

One vote per user is the primary key of ``poll_votes`` (poll, user), so it holds across
reconnects and across server processes whatever each process remembers. One running poll per
channel is ``open_channel_id``: the channel's id while the poll runs, NULL once it has ended,
under a unique index (NULLs never collide), so two moderators on two processes cannot both
start one. Shares ``models.Base`` like ``storage.creator_models``.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class Poll(Base):
    __tablename__ = "polls"
    __table_args__ = (Index("ix_polls_channel_id_id", "channel_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    # The broadcast that was live when it started (its analytics report lists it); NULL when
    # the channel was offline.
    stream_id: Mapped[int | None] = mapped_column(
        ForeignKey("streams.id", ondelete="SET NULL"), index=True
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    question: Mapped[str] = mapped_column(String(200))
    options: Mapped[list[str]] = mapped_column(JSON)
    started_ms: Mapped[int] = mapped_column(BigInteger)
    ends_ms: Mapped[int] = mapped_column(BigInteger)
    ended_ms: Mapped[int | None] = mapped_column(BigInteger)
    # The channel's id while running, NULL once ended: at most one running poll per channel.
    open_channel_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    # Final votes per option, counted from poll_votes when it ended.
    result: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)


class PollVote(Base):
    __tablename__ = "poll_votes"

    poll_id: Mapped[int] = mapped_column(
        ForeignKey("polls.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    option: Mapped[int] = mapped_column(SmallInteger)
    voted_ms: Mapped[int] = mapped_column(BigInteger)


__all__ = ["Poll", "PollVote"]
