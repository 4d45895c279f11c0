"""Emotes (issue 16): images that chat shows where a message has their code as a word.

A row with no channel is a global emote (kept by admins, usable in every chat); a row with a
channel belongs to that channel (kept by its owner). Shares ``models.Base`` so one metadata
describes the whole schema, like ``storage.creator_models``. The files themselves (one per
size) are named from ``file_key`` and live in the object store under ``emotes/``; the row only
says which key and whether it is animated (which decides the files' format).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow

CODE_MAX = 32
FILE_KEY_LENGTH = 32  # hex digits of the random part of the files' names


class Emote(Base):
    __tablename__ = "emotes"
    __table_args__ = (
        # One code per channel; global codes are unique among globals (a partial index, since
        # NULLs never clash in a UNIQUE constraint on either engine).
        UniqueConstraint("channel_id", "code"),
        Index(
            "uq_emotes_global_code",
            "code",
            unique=True,
            sqlite_where=text("channel_id IS NULL"),
            postgresql_where=text("channel_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int | None] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(CODE_MAX))
    file_key: Mapped[str] = mapped_column(String(FILE_KEY_LENGTH))
    animated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Rendered only in messages of the channel's followers (and its owner, moderators, admins).
    follower_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = ["CODE_MAX", "FILE_KEY_LENGTH", "Emote"]
