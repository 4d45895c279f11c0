"""The video library (issue 13): past broadcasts as videos their owner manages.

A video is the ``streams`` row of an ended broadcast. Who may watch one is a pure rule
(``can_view``) that every route applies the same way (page, VOD HLS, API, download, chat
replay, clips), through ``webapp.stream_links.find_video``:

* public: anyone, by its id (a listed channel's) or its public id;
* unlisted: by its public id only (the link is the secret), as an unlisted channel's streams;
* private: its channel's owner and admins only;
* deleted: nobody gets its media (the files are gone; the row stays for history).

Public listings (category pages, search, a channel's home, the streams API) show only public,
undeleted videos (``listed_clause``).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.creator_models import VISIBILITIES, MediaView
from storage.db import rowcount
from storage.errors import ValidationError
from storage.models import Channel, Stream, StreamStatus, utcnow
from storage.objects import ObjectStore, ObjectStoreError

log = logging.getLogger(__name__)

PUBLIC, UNLISTED, PRIVATE = VISIBILITIES
VIDEO_FIELDS = ("title", "description", "visibility", "pinned")
CHANNEL_VIDEO_FIELDS = ("retention_days", "retention_max_gb", "allow_downloads", "allow_vod_clips")
TITLE_MAX = 140
DESCRIPTION_MAX = 5000
# The largest per-channel limits one may set (about 27 years; 1 PB).
RETENTION_DAYS_MAX = 10000
RETENTION_GB_MAX = 1_000_000.0
ENDED = (StreamStatus.OFFLINE, StreamStatus.ARCHIVED)
GB = 1 << 30


def can_reach(
    stream: Stream,
    channel: Channel,
    viewer_id: int | None,
    is_admin: bool,
    *,
    by_public_id: bool = False,
) -> bool:
    """The visibility rule alone (deleted or not): whether this viewer may find the video
    named this way (``by_public_id``: the URL named it by its public id, not its id)."""
    if is_admin or (viewer_id is not None and viewer_id == channel.owner_id):
        return True
    if stream.visibility == PUBLIC and channel.is_public:
        return True
    if stream.visibility in (PUBLIC, UNLISTED):
        return by_public_id  # an unlisted video, or any video of an unlisted channel
    return False  # private, or a value this code does not know: the safe answer


def can_view(
    stream: Stream,
    channel: Channel,
    viewer_id: int | None,
    is_admin: bool,
    *,
    by_public_id: bool = False,
) -> bool:
    """Whether this viewer may watch the video (its media: playlists, segments, download)."""
    return stream.deleted_at is None and can_reach(
        stream, channel, viewer_id, is_admin, by_public_id=by_public_id
    )


def listed_clause() -> ColumnElement[bool]:
    """The videos a public listing may show (the channel's own listedness is the caller's)."""
    return and_(Stream.visibility == PUBLIC, Stream.deleted_at.is_(None))


# -- a video's own fields ---------------------------------------------------------------------


def _reject_unknown(changes: Any, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(changes, dict):
        raise ValidationError(f"the body must be a JSON object of {what} fields")
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise ValidationError(f"unknown {what} field(s): {', '.join(map(str, unknown))}")
    return changes


def _text(value: Any, what: str, most: int, *, multiline: bool) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string")
    value = value.strip()
    if len(value) > most:
        raise ValidationError(f"{what} is longer than {most} characters")
    if "\x00" in value or (not multiline and ("\n" in value or "\r" in value)):
        raise ValidationError(f"{what} holds characters it may not")
    return value


def clean_video_changes(changes: Any) -> dict[str, Any]:
    """Validate a partial update of a video; unknown fields are an error, not ignored."""
    changes = _reject_unknown(changes, VIDEO_FIELDS, "video")
    out: dict[str, Any] = {}
    if "title" in changes:
        out["title"] = _text(changes["title"], "title", TITLE_MAX, multiline=False)
        if not out["title"]:
            raise ValidationError("title must not be empty")
    if "description" in changes:
        value = changes["description"]
        out["description"] = (
            "" if value is None else _text(value, "description", DESCRIPTION_MAX, multiline=True)
        )
    if "visibility" in changes:
        if changes["visibility"] not in VISIBILITIES:
            raise ValidationError(f"visibility must be one of {', '.join(VISIBILITIES)}")
        out["visibility"] = changes["visibility"]
    if "pinned" in changes:
        if not isinstance(changes["pinned"], bool):
            raise ValidationError("pinned must be true or false")
        out["pinned"] = changes["pinned"]
    return out


async def update_video(session: AsyncSession, stream: Stream, changes: Any) -> Stream:
    for key, value in clean_video_changes(changes).items():
        setattr(stream, key, value)
    await session.flush()
    return stream


async def mark_deleted(session: AsyncSession, stream: Stream, now: datetime | None = None) -> None:
    """The row stays (history, analytics, notifications point at it) with no media."""
    if stream.deleted_at is None:
        stream.deleted_at = now or utcnow()
    stream.vod_available = False
    stream.pinned = False
    stream.thumbnail_path = None
    await session.flush()


def clean_channel_video_settings(changes: Any) -> dict[str, Any]:
    """A channel's own retention limits (null: the server's) and what viewers may do."""
    changes = _reject_unknown(changes, CHANNEL_VIDEO_FIELDS, "video setting")
    out: dict[str, Any] = {}
    for name, most, kind in (
        ("retention_days", RETENTION_DAYS_MAX, int),
        ("retention_max_gb", RETENTION_GB_MAX, float),
    ):
        if name not in changes:
            continue
        value = changes[name]
        if value is None:
            out[name] = None
            continue
        number_types = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, number_types):
            raise ValidationError(f"{name} must be a {'whole ' if kind is int else ''}number")
        if not 0 <= value <= most:  # also refuses NaN
            raise ValidationError(f"{name} must be between 0 (keep forever) and {most}")
        out[name] = kind(value)
    for name in ("allow_downloads", "allow_vod_clips"):
        if name in changes:
            if not isinstance(changes[name], bool):
                raise ValidationError(f"{name} must be true or false")
            out[name] = changes[name]
    return out


async def update_channel_video_settings(
    session: AsyncSession, channel: Channel, changes: Any
) -> Channel:
    for key, value in clean_channel_video_settings(changes).items():
        setattr(channel, key, value)
    await session.flush()
    return channel


# -- the library ------------------------------------------------------------------------------


async def channel_videos(
    session: AsyncSession, channel_id: int, *, limit: int, before_id: int | None = None
) -> list[Stream]:
    """The channel's past broadcasts for its owner (every visibility, deleted ones too), newest
    first; ``before_id`` pages on."""
    q = select(Stream).where(Stream.channel_id == channel_id, Stream.status.in_(ENDED))
    if before_id is not None:
        q = q.where(Stream.id < before_id)
    return list((await session.scalars(q.order_by(Stream.id.desc()).limit(limit))).all())


async def storage_used(session: AsyncSession, channel_id: int) -> int:
    """Bytes the channel's kept recordings take on disk (as measured when archived)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Stream.size_bytes), 0)).where(
            Stream.channel_id == channel_id, Stream.deleted_at.is_(None)
        )
    )
    return int(total or 0)


async def record_view(session: AsyncSession, stream_id: int, viewer_key: str) -> bool:
    """Count one view per viewer session: True (and ``views`` + 1) only for a new viewer."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    result = await session.execute(
        insert(MediaView)
        .values(kind="video", ref_id=stream_id, viewer_key=viewer_key, created_at=utcnow())
        .on_conflict_do_nothing()
    )
    added = rowcount(result) > 0
    if added:
        await session.execute(
            update(Stream).where(Stream.id == stream_id).values(views=Stream.views + 1)
        )
    await session.flush()
    return added


# -- files ------------------------------------------------------------------------------------


def recording_dir(data_dir: Path, stream_id: int) -> Path:
    return data_dir / "streams" / str(stream_id)


def measure_recording(directory: Path) -> int:
    """Bytes of every file under a recording's directory (blocking: run it in a thread)."""
    total = 0
    for path in directory.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        except OSError:
            continue  # removed while walking
    return total


def remove_recording(data_dir: Path, stream_id: int, thumbnail_path: str | None) -> None:
    """Delete a recording's files: its directory (segments, playlists, previews) and its own
    thumbnail (blocking: run it in a thread). Only paths this server made are touched."""
    shutil.rmtree(recording_dir(data_dir, stream_id), ignore_errors=True)
    own = data_dir / "thumbnails" / "streams" / f"{stream_id}.jpg"
    if thumbnail_path == str(own.relative_to(data_dir)):
        own.unlink(missing_ok=True)


async def remove_stored_recording(
    store: ObjectStore, stream_id: int, thumbnail_path: str | None
) -> None:
    """The bucket's copy of what ``remove_recording`` deletes (S3 mode, issue 15). A store
    that fails leaves orphaned objects, logged and counted, never an error for the user."""
    if store.is_local:
        return  # the files were the objects
    own = f"thumbnails/streams/{stream_id}.jpg"
    try:
        await store.delete_prefix(f"streams/{stream_id}/")
        if thumbnail_path == own:
            await store.delete(own)
    except ObjectStoreError as exc:
        log.warning("recording %d not deleted from the object store: %s", stream_id, exc)


async def unmeasured(session: AsyncSession, limit: int) -> list[int]:
    """Kept recordings whose size was never measured (archived before sizes were kept)."""
    rows = await session.scalars(
        select(Stream.id)
        .where(
            Stream.status == StreamStatus.ARCHIVED,
            Stream.deleted_at.is_(None),
            Stream.vod_available.is_(True),
            Stream.size_bytes.is_(None),
        )
        .order_by(Stream.id)
        .limit(limit)
    )
    return list(rows.all())


async def set_size(session: AsyncSession, stream_id: int, size: int) -> None:
    await session.execute(update(Stream).where(Stream.id == stream_id).values(size_bytes=size))
    await session.flush()


# -- retention --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeptVideo:
    """What retention needs to know of one kept recording."""

    stream_id: int
    channel_id: int
    ended_at: datetime
    size_bytes: int
    pinned: bool


@dataclass(frozen=True)
class Limits:
    days: int  # 0: no limit
    max_gb: float  # 0: no limit


def effective_limits(channel: Channel, default: Limits) -> Limits:
    """A channel's own limit replaces the server's, each on its own (NULL: the server's)."""
    return Limits(
        default.days if channel.retention_days is None else channel.retention_days,
        default.max_gb if channel.retention_max_gb is None else channel.retention_max_gb,
    )


def plan_retention(
    videos: Sequence[KeptVideo], limits: Limits, now: datetime
) -> list[tuple[KeptVideo, str]]:
    """Which of one channel's kept videos to remove, and why: those that ended more than
    ``days`` ago, then the oldest until the rest take at most ``max_gb``. Pinned videos are
    exempt from both: never removed, and not counted against the size limit."""
    out: list[tuple[KeptVideo, str]] = []
    kept = sorted((v for v in videos if not v.pinned), key=lambda v: (v.ended_at, v.stream_id))
    if limits.days > 0:
        cutoff = now - timedelta(days=limits.days)
        out += [(v, f"older than {limits.days} days") for v in kept if v.ended_at < cutoff]
        kept = [v for v in kept if v.ended_at >= cutoff]
    if limits.max_gb > 0:
        budget = limits.max_gb * GB
        total = sum(v.size_bytes for v in kept)
        for v in kept:
            if total <= budget:
                break
            out.append((v, f"over {limits.max_gb:g} GB"))
            total -= v.size_bytes
    return out


async def retention_candidates(
    session: AsyncSession, default: Limits, now: datetime
) -> list[tuple[KeptVideo, str, str]]:
    """Every video retention removes now, with its channel's slug and the reason, channel by
    channel. Only channels with a limit (their own or the server's) are read."""
    q = select(Channel)
    if default.days <= 0 and default.max_gb <= 0:
        q = q.where(or_(Channel.retention_days > 0, Channel.retention_max_gb > 0))
    out: list[tuple[KeptVideo, str, str]] = []
    for channel in (await session.scalars(q.order_by(Channel.id))).all():
        limits = effective_limits(channel, default)
        if limits.days <= 0 and limits.max_gb <= 0:
            continue
        rows = await session.execute(
            select(
                Stream.id,
                func.coalesce(Stream.ended_at, Stream.started_at),
                Stream.size_bytes,
                Stream.pinned,
            ).where(
                Stream.channel_id == channel.id,
                Stream.status == StreamStatus.ARCHIVED,
                Stream.deleted_at.is_(None),
            )
        )
        videos = [
            KeptVideo(sid, channel.id, _aware(ended or now, now), int(size or 0), bool(pinned))
            for sid, ended, size, pinned in rows.all()
        ]
        out += [(v, channel.slug, why) for v, why in plan_retention(videos, limits, now)]
    return out


def _aware(moment: datetime, like: datetime) -> datetime:
    """SQLite gives naive datetimes back; they were stored in UTC."""
    if moment.tzinfo is None and like.tzinfo is not None:
        return moment.replace(tzinfo=like.tzinfo)
    return moment
