"""The product's core schema: users, channels, streams, chat and moderation.

Portable across SQLite and PostgreSQL: plain types only (no ARRAY, no native ENUM), JSON for
small documents, enums stored as their string values, and datetimes always timezone-aware UTC
(``UTCDateTime`` re-attaches UTC on the way out because SQLite drops the offset).

Constraint and index names come from ``NAMING_CONVENTION`` so the hand-written migration in
``migrations/versions`` names everything exactly as these models do; ``tests`` compare the two.

Relationships are ``lazy="raise"``: under asyncio an implicit lazy load is an error anyway, and
a clear "use selectinload" beats a MissingGreenlet from deep inside a request handler.
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    false,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from storage.discovery_models import Category

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always hands back aware UTC datetimes.

    Naive datetimes going in are taken to be UTC (what ``datetime.utcnow()`` returns) rather
    than refused, so a caller's slip cannot lose a row; aware ones are converted to UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def new_public_id() -> str:
    """A stream's unguessable name (128 random bits, 22 URL-safe characters): the link to a
    stream of an unlisted channel, where the sequential id would let anyone enumerate them."""
    return secrets.token_urlsafe(16)


class StreamStatus(enum.Enum):
    """Life of one broadcast. Stored as the lower-case value."""

    OFFLINE = "offline"  # ended; nothing to watch (or no recording kept)
    LIVE = "live"  # a publisher is sending media
    ENDING = "ending"  # publisher gone; transcoders and packagers are flushing
    ARCHIVED = "archived"  # ended and a VOD is (or will be) available


class ReportStatus(enum.Enum):
    OPEN = "open"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"


def _enum_values(cls: type[enum.Enum]) -> list[str]:
    return [member.value for member in cls]


# Non-native enums: a VARCHAR holding the value; no CREATE TYPE on PostgreSQL, so adding a
# state later is a code change, not a migration of a database type.
STREAM_STATUS_TYPE = Enum(
    StreamStatus,
    name="stream_status",
    native_enum=False,
    length=16,
    values_callable=_enum_values,
    validate_strings=True,
)
REPORT_STATUS_TYPE = Enum(
    ReportStatus,
    name="report_status",
    native_enum=False,
    length=16,
    values_callable=_enum_values,
    validate_strings=True,
)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    # argon2id PHC string, or an unusable marker (see storage.passwords).
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # A disabled account cannot log in, and its sessions and API tokens stop working.
    is_disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    # Set when the user finishes (or skips) the onboarding page after registering.
    onboarded_at: Mapped[datetime | None]

    profile: Mapped[Profile | None] = relationship(
        back_populates="user", lazy="raise", uselist=False, passive_deletes=True
    )
    channels: Mapped[list[Channel]] = relationship(
        back_populates="owner", lazy="raise", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<User id={self.id} username={self.username!r}>"


class Profile(Base):
    __tablename__ = "profiles"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    display_name: Mapped[str] = mapped_column(String(64))
    bio: Mapped[str] = mapped_column(Text, default="")
    avatar_path: Mapped[str | None] = mapped_column(String(512))
    banner_path: Mapped[str | None] = mapped_column(String(512))
    social_links: Mapped[dict[str, Any]] = mapped_column(default=dict)
    theme: Mapped[str] = mapped_column(String(16), default="dark", server_default="dark")
    language: Mapped[str] = mapped_column(String(16), default="en", server_default="en")

    user: Mapped[User] = relationship(back_populates="profile", lazy="raise")


class ApiToken(Base):
    """A bearer token. Only the SHA-256 of the token is kept; the plaintext is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    # First characters of the token, so a user can tell their tokens apart in a list.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(lazy="raise")


class LoginSession(Base):
    """A browser login. The cookie carries a random token; only its SHA-256 is stored, so a
    copy of the database does not let anyone take over a session."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)

    user: Mapped[User] = relationship(lazy="raise")


class Channel(Base):
    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(48), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str | None] = mapped_column(String(64), index=True)
    # The catalogue entry (storage.discovery_models.Category); NULL: no category.
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id", ondelete="SET NULL"), index=True
    )
    # The language the creator streams in (a BCP 47 primary tag such as "en"); NULL: unset.
    language: Mapped[str | None] = mapped_column(String(16), index=True)
    tags: Mapped[list[str]] = mapped_column(default=list)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Kept so the owner's dashboard can show it again; ingest looks channels up by the hash
    # (indexed) and then compares the key in constant time.
    stream_key: Mapped[str] = mapped_column(String(64))
    stream_key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    avatar_path: Mapped[str | None] = mapped_column(String(512))
    banner_path: Mapped[str | None] = mapped_column(String(512))
    # This channel's own transcoding ladder ([{name, height, fps, video_kbps}, ...]);
    # NULL: the server's default ladder (transcode.ladder).
    ladder: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    follower_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    total_streams: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    total_views: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    # Past broadcasts kept: at most this many days, and at most this many GB in all (pinned
    # videos exempt); NULL: the server's defaults (settings ``videos.retention_*``).
    retention_days: Mapped[int | None] = mapped_column(Integer)
    retention_max_gb: Mapped[float | None] = mapped_column(Float)
    # Whether viewers (not only the owner) may download this channel's videos as MP4, and
    # clip its past broadcasts (clipping live is open to every logged-in viewer).
    allow_downloads: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    allow_vod_clips: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    owner: Mapped[User] = relationship(back_populates="channels", lazy="raise")
    # The catalogue entry of category_id, joined into the statement that loads the channel
    # (a LEFT OUTER JOIN on the small catalogue: no round trip of its own, where a "selectin"
    # load cost each page one more statement) so a document can show its slug without a
    # query of its own. storage.categories sets it together with category_id.
    category_entry: Mapped[Category | None] = relationship(lazy="joined")
    streams: Mapped[list[Stream]] = relationship(
        back_populates="channel", lazy="raise", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<Channel id={self.id} slug={self.slug!r}>"


class Stream(Base):
    """One broadcast of a channel, from publish to unpublish (and its VOD afterwards)."""

    __tablename__ = "streams"
    __table_args__ = (
        Index("ix_streams_channel_id_started_at", "channel_id", "started_at"),
        Index("ix_streams_status_started_at", "status", "started_at"),
        # At most one LIVE stream per channel, enforced by the database so two publishers
        # racing on one key cannot both win.
        Index(
            "uq_streams_channel_id_live",
            "channel_id",
            unique=True,
            sqlite_where=text("status = 'live'"),
            postgresql_where=text("status = 'live'"),
        ),
        Index("uq_streams_public_id", "public_id", unique=True),
        Index("ix_streams_category_id_started_at", "category_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The link for a stream of an unlisted channel (VOD, API); ids only reach listed ones.
    public_id: Mapped[str] = mapped_column(String(32), default=new_public_id)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(140))
    category: Mapped[str | None] = mapped_column(String(64))
    # The category the broadcast ran under, kept when the channel later changes its own.
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id", ondelete="SET NULL")
    )
    status: Mapped[StreamStatus] = mapped_column(
        STREAM_STATUS_TYPE, default=StreamStatus.OFFLINE, server_default=StreamStatus.OFFLINE.value
    )
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    viewer_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    peak_viewers: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    hls_path: Mapped[str | None] = mapped_column(String(512))
    thumbnail_path: Mapped[str | None] = mapped_column(String(512))
    vod_path: Mapped[str | None] = mapped_column(String(512))
    vod_duration_seconds: Mapped[float | None] = mapped_column(Float)
    vod_available: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # What the publisher sent: codecs, resolution, frame rate, bitrates (from the ingest).
    source_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The video library (issue 13): the owner edits these after the broadcast.
    description: Mapped[str] = mapped_column(Text, default="", server_default=text("''"))
    # "public", "unlisted" (reachable by its public id only) or "private" (owner and admins).
    visibility: Mapped[str] = mapped_column(String(16), default="public", server_default="public")
    pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Deleted by the owner or by retention: the files are gone, the row stays (analytics,
    # history and notifications still point at it).
    deleted_at: Mapped[datetime | None]
    # One per viewer session (storage.creator_models.MediaView), not per request.
    views: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    # Bytes of the recording on disk, measured when it is archived; NULL: not measured.
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)

    channel: Mapped[Channel] = relationship(back_populates="streams", lazy="raise")
    # As Channel.category_entry.
    category_entry: Mapped[Category | None] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"<Stream id={self.id} channel_id={self.channel_id} status={self.status.value}>"


class Message(Base):
    """A chat message. Moderation deletes softly (deleted_at/deleted_by_id) to keep evidence."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_channel_id_created_at", "channel_id", "created_at"),
        Index("ix_messages_stream_id_created_at", "stream_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Chat also works while a channel is offline, so a message may belong to no stream.
    stream_id: Mapped[int | None] = mapped_column(ForeignKey("streams.id", ondelete="SET NULL"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]
    deleted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    user: Mapped[User] = relationship(foreign_keys=[user_id], lazy="raise")
    channel: Mapped[Channel] = relationship(lazy="raise")
    stream: Mapped[Stream | None] = relationship(lazy="raise")


class Follow(Base):
    """User follows user. The (follower, followed) pair is the primary key, so it is unique."""

    __tablename__ = "follows"

    follower_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    followed_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChannelFollow(Base):
    __tablename__ = "channel_follows"
    # A go-live fan-out walks one channel's followers in user order, a batch at a time.
    __table_args__ = (Index("ix_channel_follows_channel_id_user_id", "channel_id", "user_id"),)

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The bell: False silences this channel's go-live notifications for this follower.
    notify: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class Block(Base):
    __tablename__ = "blocks"

    blocker_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    blocked_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Report(Base):
    """A user's report of a user, a message or a channel, for moderators to work through."""

    __tablename__ = "reports"
    __table_args__ = (Index("ix_reports_status_created_at", "status", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    target_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    channel_id: Mapped[int | None] = mapped_column(
        ForeignKey("channels.id", ondelete="SET NULL"), index=True
    )
    reason: Mapped[str] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[ReportStatus] = mapped_column(
        REPORT_STATUS_TYPE, default=ReportStatus.OPEN, server_default=ReportStatus.OPEN.value
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "UTCDateTime",
    "utcnow",
    "new_public_id",
    "StreamStatus",
    "ReportStatus",
    "User",
    "Profile",
    "ApiToken",
    "LoginSession",
    "Channel",
    "Stream",
    "Message",
    "Follow",
    "ChannelFollow",
    "Block",
    "Report",
]
