"""Tables of the creator tools (issue 13): chapters of a broadcast, views counted once per
viewer session, and clips cut from a live stream or a past broadcast.

The video library itself is the ``streams`` table (``models.Stream``: visibility, pinned,
deleted, views, size), since a past broadcast is the stream row it always was; these tables
hang off it. Analytics rollups have a module of their own.

They share ``models.Base`` (and its naming convention) so one metadata describes the whole
schema and the migration test compares all of it, like ``storage.discovery_models``.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow

VISIBILITIES = ("public", "unlisted", "private")
CLIP_SOURCES = ("live", "vod")
# draft: captured, waiting for the clipper to trim and publish; processing: being cut;
# ready: published and playable; failed: the cut failed (``error`` says why); deleted: its
# files removed by the owner, a moderator or the clipper, the row kept.
CLIP_STATES = ("draft", "processing", "ready", "failed", "deleted")
VIEW_KINDS = ("video", "clip")


def new_clip_id() -> str:
    """A clip's link: unguessable, so a clip of unlisted content is as unlisted as it."""
    return secrets.token_urlsafe(12)


class StreamChapter(Base):
    """A chapter of a broadcast: where its title or category changed while it was live (the
    first chapter starts at 0 with what it started with)."""

    __tablename__ = "stream_chapters"
    __table_args__ = (
        Index("ix_stream_chapters_stream_id_offset_seconds", "stream_id", "offset_seconds"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"))
    # Seconds from the start of the recording.
    offset_seconds: Mapped[float] = mapped_column(Float)
    title: Mapped[str] = mapped_column(String(140))
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id", ondelete="SET NULL")
    )
    # The category's name as it was, kept if the catalogue entry is later renamed or removed.
    category_name: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MediaView(Base):
    """One viewer session's view of a video or a clip: the counter (``Stream.views``,
    ``Clip.views``) rises only when a row is new, so reloading or seeking counts once."""

    __tablename__ = "media_views"
    __table_args__ = (
        Index("uq_media_views_kind_ref_id_viewer_key", "kind", "ref_id", "viewer_key", unique=True),
        Index("ix_media_views_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # VIEW_KINDS
    ref_id: Mapped[int] = mapped_column(Integer)  # streams.id or clips.id
    # A hash of the viewer's session (user id, or the anonymous viewer cookie).
    viewer_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Clip(Base):
    """A short cut of a broadcast. Its visibility is its source's: a clip of an unlisted
    channel or of a private video is exactly as reachable as what it was cut from."""

    __tablename__ = "clips"
    __table_args__ = (
        Index("uq_clips_public_id", "public_id", unique=True),
        Index("ix_clips_channel_id_created_at", "channel_id", "created_at"),
        Index("ix_clips_clipper_id_created_at", "clipper_id", "created_at"),
        Index("ix_clips_stream_id", "stream_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), default=new_clip_id)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    # The broadcast it was cut from (NULL once that row is gone).
    stream_id: Mapped[int | None] = mapped_column(ForeignKey("streams.id", ondelete="SET NULL"))
    clipper_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(140))
    source: Mapped[str] = mapped_column(String(8))  # CLIP_SOURCES
    status: Mapped[str] = mapped_column(String(16), default="draft", server_default="draft")
    # The cut, in seconds from the start of the source broadcast's recording.
    start_seconds: Mapped[float] = mapped_column(Float)
    end_seconds: Mapped[float] = mapped_column(Float)
    # Where its files are (MP4, HLS renditions, thumbnail), relative to the data dir.
    path: Mapped[str | None] = mapped_column(String(512))
    thumbnail_path: Mapped[str | None] = mapped_column(String(512))
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    views: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
