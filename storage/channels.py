"""Channel and stream queries behind the creator dashboard and the channels/streams JSON API.

Same rules as ``storage.queries``: every function takes an ``AsyncSession``, flushes, never
commits, and raises ``ValidationError`` / ``ConflictError`` / ``NotFoundError`` with a message
for the person who typed the input. Field limits follow the column sizes in ``models``.

A stream has no tags of its own: tags describe the channel (what it usually streams) and the
stream shows its channel's, so editing a live stream's tags edits the channel's.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import categories, queries, replay, videos
from storage.accounts import display_name
from storage.errors import ConflictError, ValidationError
from storage.models import Channel, Profile, Stream, StreamStatus, User

DESCRIPTION_MAX = 2000
CATEGORY_MAX = 64
TAG_MAX = 32
TAGS_MAX = 10
TAG_RE = re.compile(r"^[\w][\w .+#&'-]*$")
# Most channels one user may own (a display and abuse bound, like the column sizes).
CHANNELS_PER_USER_MAX = 20
STREAM_LIST_MAX = 100
# How URLs name a stream: its sequential id (no leading zero), or its public id
# (``models.new_public_id``: 22 URL-safe characters). The lengths never overlap.
STREAM_ID_RE = re.compile(r"[1-9][0-9]{0,17}")
PUBLIC_ID_RE = re.compile(r"[A-Za-z0-9_-]{22}")
# A channel's language: a BCP 47 language tag of a primary language subtag, optionally a
# script and a region ("en", "pt-BR", "zh-Hant-TW"): enough to filter by, short to show.
LANGUAGE_RE = re.compile(r"([a-z]{2,3})(?:-([a-z]{4}))?(?:-([a-z]{2}|[0-9]{3}))?", re.IGNORECASE)
LANGUAGE_MAX = 16

CHANNEL_FIELDS = ("name", "description", "category", "language", "tags", "is_public")
STREAM_FIELDS = ("title", "category", "tags")


def _text(
    value: Any, what: str, max_len: int, *, allow_empty: bool = False, multiline: bool = False
) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string")
    cleaned = value.strip()
    if not cleaned and not allow_empty:
        raise ValidationError(f"{what} must not be empty")
    if len(cleaned) > max_len:
        raise ValidationError(f"{what} is too long ({len(cleaned)} characters, at most {max_len})")
    allowed = "\n\t" if multiline else ""
    if any(ord(c) < 32 and c not in allowed for c in cleaned):
        raise ValidationError(f"{what} must not contain control characters")
    return cleaned


def clean_category(value: Any) -> str | None:
    """What a form chose as category (a catalogue name or slug; which entry it names is
    ``storage.categories``' question), or None for "no category" (null or "")."""
    if value is None:
        return None
    cleaned = _text(value, "category", CATEGORY_MAX, allow_empty=True)
    return cleaned or None


def clean_language(value: Any) -> str | None:
    """A language tag in its usual case ("pt-BR"), or None for "unset" (null or "")."""
    if value is None:
        return None
    cleaned = _text(value, "language", LANGUAGE_MAX, allow_empty=True).replace("_", "-")
    if not cleaned:
        return None
    match = LANGUAGE_RE.fullmatch(cleaned)
    if match is None:
        raise ValidationError(
            f"invalid language {cleaned!r}: use a BCP 47 language tag such as en, de or pt-BR"
        )
    lang, script, region = match.groups()
    parts = [lang.lower(), script.title() if script else "", region.upper() if region else ""]
    return "-".join(p for p in parts if p)


def clean_tags(value: Any) -> list[str]:
    """A list of distinct tags (case-insensitively), order kept."""
    if not isinstance(value, list):
        raise ValidationError("tags must be a list of strings")
    if len(value) > TAGS_MAX:
        raise ValidationError(f"too many tags ({len(value)}, at most {TAGS_MAX})")
    out: list[str] = []
    seen: set[str] = set()
    for tag in value:
        cleaned = _text(tag, "a tag", TAG_MAX)
        if not TAG_RE.fullmatch(cleaned):
            raise ValidationError(
                f"invalid tag {cleaned!r}: use letters, digits, spaces and - _ . + # & '"
            )
        if cleaned.lower() not in seen:
            seen.add(cleaned.lower())
            out.append(cleaned)
    return out


def _reject_unknown(changes: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    """Unknown fields are an error, not ignored: a typo must not look like a saved change."""
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise ValidationError(f"unknown {what} field(s): {', '.join(unknown)}")


def clean_channel_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Validate a partial channel update; unknown fields are an error, not ignored."""
    _reject_unknown(changes, CHANNEL_FIELDS, "channel")
    out: dict[str, Any] = {}
    if "name" in changes:
        out["name"] = _text(changes["name"], "channel name", queries.CHANNEL_NAME_MAX)
    if "description" in changes:
        value = changes["description"]
        out["description"] = (
            ""
            if value is None
            else _text(value, "description", DESCRIPTION_MAX, allow_empty=True, multiline=True)
        )
    if "category" in changes:
        out["category"] = clean_category(changes["category"])
    if "language" in changes:
        out["language"] = clean_language(changes["language"])
    if "tags" in changes:
        out["tags"] = clean_tags(changes["tags"])
    if "is_public" in changes:
        if not isinstance(changes["is_public"], bool):
            raise ValidationError("is_public must be true or false")
        out["is_public"] = changes["is_public"]
    return out


def clean_stream_changes(changes: dict[str, Any]) -> dict[str, Any]:
    _reject_unknown(changes, STREAM_FIELDS, "stream")
    out: dict[str, Any] = {}
    if "title" in changes:
        out["title"] = _text(changes["title"], "stream title", queries.TITLE_MAX)
    if "category" in changes:
        out["category"] = clean_category(changes["category"])
    if "tags" in changes:
        out["tags"] = clean_tags(changes["tags"])
    return out


# -- lookups ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelWithOwner:
    """A channel with its owner and the owner's profile (None when they have none)."""

    channel: Channel
    owner: User
    profile: Profile | None

    @property
    def creator(self) -> str:
        """The owner as viewers see them: the display name, else the username."""
        return display_name(self.owner, self.profile)


async def channel_with_owner(session: AsyncSession, slug: str) -> ChannelWithOwner | None:
    """The channel ``slug`` names, with its owner; None for an unknown slug, and for one that
    could never name a channel (not looked up)."""
    if not isinstance(slug, str) or not queries.SLUG_RE.fullmatch(slug):
        return None
    row = (await session.execute(_with_owner(), {"slug": slug})).one_or_none()
    return None if row is None else ChannelWithOwner(row[0], row[1], row[2])


@functools.cache
def _with_owner() -> Select[Channel, User, Profile]:
    """Built once: statements are dearer to build than this one is to run."""
    return (
        select(Channel, User, Profile)
        .join(User, User.id == Channel.owner_id)
        .outerjoin(Profile, Profile.user_id == User.id)
        .where(Channel.slug == bindparam("slug"))
    )


async def get_channel(session: AsyncSession, channel_id: int) -> Channel | None:
    return await session.get(Channel, channel_id)


async def get_stream(session: AsyncSession, stream_id: int) -> Stream | None:
    return await session.get(Stream, stream_id)


async def channel_slugs(session: AsyncSession, channel_ids: Collection[int]) -> list[str]:
    """The slugs of these channels, in alphabetical order."""
    if not channel_ids:
        return []
    return list(
        (
            await session.scalars(
                select(Channel.slug).where(Channel.id.in_(list(channel_ids))).order_by(Channel.slug)
            )
        ).all()
    )


async def list_channels(
    session: AsyncSession,
    *,
    limit: int,
    owner_id: int | None = None,
    owner_username: str | None = None,
) -> list[tuple[Channel, str]]:
    """Channels with their owner's username, oldest first: every one of ``owner_id`` (unlisted
    too) when given, else the listed ones (of ``owner_username`` only, when given)."""
    q = select(Channel, User.username).join(User, User.id == Channel.owner_id)
    if owner_id is not None:
        q = q.where(Channel.owner_id == owner_id)
    else:
        q = q.where(Channel.is_public.is_(True))
        if owner_username:
            q = q.where(User.username == owner_username)
    rows = (await session.execute(q.order_by(Channel.id).limit(limit))).all()
    return [(channel, name) for channel, name in rows]


@dataclass(frozen=True)
class LiveChannel:
    """A live stream of a listed channel, as the home page lists it."""

    stream: Stream
    channel: Channel
    creator: str  # the owner's display name, else the username


async def live_channels(session: AsyncSession, limit: int) -> list[LiveChannel]:
    """The live streams of listed channels, the most watched first (then the newest)."""
    rows = (
        await session.execute(
            select(Stream, Channel, User, Profile)
            .join(Channel, Channel.id == Stream.channel_id)
            .join(User, User.id == Channel.owner_id)
            .outerjoin(Profile, Profile.user_id == User.id)
            .where(Stream.status == StreamStatus.LIVE, Channel.is_public.is_(True))
            .order_by(Stream.viewer_count.desc(), Stream.started_at.desc())
            .limit(limit)
        )
    ).all()
    return [
        LiveChannel(stream, channel, display_name(user, profile))
        for stream, channel, user, profile in rows
    ]


async def user_channels(session: AsyncSession, owner_id: int) -> list[Channel]:
    return list(
        (
            await session.execute(
                select(Channel).where(Channel.owner_id == owner_id).order_by(Channel.id)
            )
        ).scalars()
    )


# -- changes ---------------------------------------------------------------------------------


async def create_channel(
    session: AsyncSession, owner: User, slug: Any, fields: dict[str, Any]
) -> Channel:
    """A new channel of ``owner`` with a fresh stream key; ``fields`` as for an update."""
    if not isinstance(slug, str):
        raise ValidationError("slug must be a string")
    changes = clean_channel_changes(fields)
    # Checked before anything is written: an unknown category leaves no channel behind.
    entry = await categories.resolve_choice(session, changes.pop("category", None))
    owned = await user_channels(session, owner.id)
    if len(owned) >= CHANNELS_PER_USER_MAX:
        raise ConflictError(f"you already own {len(owned)} channels, the most allowed")
    channel = await queries.create_channel(session, owner.username, slug, changes.pop("name", None))
    for key, value in changes.items():
        setattr(channel, key, value)
    await categories.set_channel_category(session, channel, entry.slug if entry else None)
    await session.flush()
    return channel


async def update_channel(
    session: AsyncSession, channel: Channel, changes: dict[str, Any]
) -> Channel:
    cleaned = clean_channel_changes(changes)
    if "category" in cleaned:
        await categories.set_channel_category(session, channel, cleaned.pop("category"))
    for key, value in cleaned.items():
        setattr(channel, key, value)
    await session.flush()
    return channel


async def delete_channel(session: AsyncSession, channel: Channel) -> None:
    """Delete a channel and (by cascade) its streams and chat; refused while it is live."""
    if await queries.live_stream_for_channel(session, channel.id) is not None:
        raise ConflictError(f"channel {channel.slug!r} is live: end the stream first")
    await session.execute(delete(Stream).where(Stream.channel_id == channel.id))
    await session.delete(channel)
    await session.flush()


async def update_stream(
    session: AsyncSession, stream: Stream, channel: Channel, changes: dict[str, Any]
) -> Stream:
    cleaned = clean_stream_changes(changes)
    before = (stream.title, stream.category_id)
    if "category" in cleaned:
        await categories.set_stream_category(session, stream, cleaned.pop("category"))
    if "tags" in cleaned:
        channel.tags = cleaned.pop("tags")
    for key, value in cleaned.items():
        setattr(stream, key, value)
    await session.flush()
    if stream.status is StreamStatus.LIVE and (stream.title, stream.category_id) != before:
        await replay.add_chapter(session, stream)  # a chapter marker on the recording
    return stream


async def list_streams(
    session: AsyncSession,
    *,
    channel_ids: Sequence[int] | None = None,
    live: bool | None = None,
    public_only: bool = True,
    listed_only: bool = True,
    limit: int = 20,
    before_id: int | None = None,
) -> list[tuple[Stream, Channel]]:
    """Streams newest first, with their channel; ``before_id`` pages on. ``public_only``: of
    listed channels only; ``listed_only``: public, undeleted videos only (``storage.videos``;
    off only for the channel's owner)."""
    if not 1 <= limit <= STREAM_LIST_MAX:
        raise ValidationError(f"limit must be 1 to {STREAM_LIST_MAX}")
    q = select(Stream, Channel).join(Channel, Channel.id == Stream.channel_id)
    if channel_ids is not None:
        q = q.where(Stream.channel_id.in_(list(channel_ids)))
    if live is True:
        q = q.where(Stream.status == StreamStatus.LIVE)
    elif live is False:
        q = q.where(Stream.status != StreamStatus.LIVE)
    if public_only:
        q = q.where(Channel.is_public.is_(True))
    if listed_only:
        q = q.where(videos.listed_clause())
    if before_id is not None:
        q = q.where(Stream.id < before_id)
    rows = (await session.execute(q.order_by(Stream.id.desc()).limit(limit))).all()
    return [(s, c) for s, c in rows]


def parse_stream_ref(raw: str) -> int | str | None:
    """A stream reference from a URL: the sequential id (int), the public id (str), or None
    when ``raw`` is neither."""
    if STREAM_ID_RE.fullmatch(raw):
        return int(raw)
    if PUBLIC_ID_RE.fullmatch(raw):
        return raw
    return None


async def stream_by_ref(session: AsyncSession, ref: int | str) -> tuple[Stream, Channel] | None:
    """The stream (and its channel) a reference from ``parse_stream_ref`` names. Whether the
    caller may reach it that way is the caller's rule (see ``webapp.stream_links``)."""
    where = Stream.id == ref if isinstance(ref, int) else Stream.public_id == ref
    row = (
        await session.execute(
            select(Stream, Channel).join(Channel, Channel.id == Stream.channel_id).where(where)
        )
    ).one_or_none()
    return None if row is None else (row[0], row[1])


async def listed_slugs(session: AsyncSession, slugs: Sequence[str]) -> set[str]:
    """Those of ``slugs`` that name a listed (public) channel; unknown ones are left out."""
    wanted = list(slugs)
    found: set[str] = set()
    for i in range(0, len(wanted), 500):  # well under every backend's bound on parameters
        found.update(
            (
                await session.scalars(
                    select(Channel.slug).where(
                        Channel.slug.in_(wanted[i : i + 500]), Channel.is_public.is_(True)
                    )
                )
            ).all()
        )
    return found
