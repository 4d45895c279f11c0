"""Raids and the chat extras (issue 16): a channel's raid policy and typing switch, the raids
made, the live channels a raid may go to, and follow dates for the chat's follower badges.

Like ``storage.queries``: every function takes an ``AsyncSession``, flushes, never commits
(the caller owns the transaction); bad input raises ``ValidationError``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.errors import ValidationError
from storage.models import Channel, ChannelFollow, Stream, StreamStatus, User
from storage.raid_models import DEFAULT_RAID_POLICY, RAID_POLICIES, ChannelExtras, Raid


@dataclass(frozen=True)
class Extras:
    raid_policy: str = DEFAULT_RAID_POLICY
    typing_indicators: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"raid_policy": self.raid_policy, "typing_indicators": self.typing_indicators}


async def get_extras(session: AsyncSession, channel_id: int) -> Extras:
    row = await session.get(ChannelExtras, channel_id)
    if row is None:
        return Extras()
    return Extras(row.raid_policy, row.typing_indicators)


def validate_extras(changes: Any) -> dict[str, Any]:
    """Check a partial settings document; the cleaned values, or ValidationError."""
    if not isinstance(changes, dict):
        raise ValidationError("expected a JSON object of settings")
    unknown = sorted(set(changes) - {"raid_policy", "typing_indicators"})
    if unknown:
        raise ValidationError(f"unknown setting {unknown[0]!r}")
    out: dict[str, Any] = {}
    if "raid_policy" in changes:
        if changes["raid_policy"] not in RAID_POLICIES:
            raise ValidationError("raid_policy must be one of " + ", ".join(RAID_POLICIES))
        out["raid_policy"] = changes["raid_policy"]
    if "typing_indicators" in changes:
        if not isinstance(changes["typing_indicators"], bool):
            raise ValidationError("typing_indicators must be true or false")
        out["typing_indicators"] = changes["typing_indicators"]
    return out


async def update_extras(session: AsyncSession, channel_id: int, values: dict[str, Any]) -> Extras:
    row = await session.get(ChannelExtras, channel_id)
    if row is None:
        row = ChannelExtras(
            channel_id=channel_id, raid_policy=DEFAULT_RAID_POLICY, typing_indicators=True
        )
        session.add(row)
    for key, value in values.items():
        setattr(row, key, value)
    await session.flush()
    return Extras(row.raid_policy, row.typing_indicators)


async def follows_channel(session: AsyncSession, user_id: int, channel_id: int) -> bool:
    return await session.get(ChannelFollow, (user_id, channel_id)) is not None


async def follow_dates(
    session: AsyncSession, channel_id: int, user_ids: Collection[int]
) -> dict[int, datetime]:
    """When each of these users followed the channel (those who do), in one query."""
    if not user_ids:
        return {}
    rows = await session.execute(
        select(ChannelFollow.user_id, ChannelFollow.created_at).where(
            ChannelFollow.channel_id == channel_id, ChannelFollow.user_id.in_(list(user_ids))
        )
    )
    return {int(uid): created for uid, created in rows.all()}


@dataclass(frozen=True)
class Broadcast:
    """A channel's current broadcast, or its last one: what a raid's window is judged by."""

    live: bool
    viewers: int
    ended_at: datetime | None


async def broadcast_of(session: AsyncSession, channel_id: int) -> Broadcast | None:
    """The channel's live stream, else its most recently ended one; None if it never streamed."""
    row = (
        await session.execute(
            select(Stream.status, Stream.viewer_count, Stream.ended_at)
            .where(Stream.channel_id == channel_id, Stream.started_at.is_not(None))
            .order_by((Stream.status == StreamStatus.LIVE).desc(), Stream.started_at.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    status, viewers, ended = row
    return Broadcast(status == StreamStatus.LIVE, int(viewers or 0), ended)


@dataclass(frozen=True)
class LiveChannel:
    id: int
    slug: str
    name: str
    owner: str
    title: str
    viewers: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "name": self.name,
            "owner": self.owner,
            "title": self.title,
            "viewers": self.viewers,
        }


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def live_channels(
    session: AsyncSession, query: str, *, exclude_id: int, limit: int
) -> list[LiveChannel]:
    """Public live channels whose slug, name or title contain ``query`` (any when empty), the
    most watched first: what a raid may target. An unlisted live channel is found only by
    its exact slug."""
    q = (
        select(Channel.id, Channel.slug, Channel.name, User.username, Stream.title)
        .add_columns(Stream.viewer_count)
        .join(Stream, Stream.channel_id == Channel.id)
        .join(User, User.id == Channel.owner_id)
        .where(Stream.status == StreamStatus.LIVE, Channel.id != exclude_id)
    )
    text = query.strip().lower()
    if text:
        like = f"%{_escape_like(text)}%"
        q = q.where(
            or_(
                Channel.slug == text,
                Channel.is_public.is_(True)
                & or_(
                    Channel.slug.like(like, escape="\\"),
                    func.lower(Channel.name).like(like, escape="\\"),
                    func.lower(Stream.title).like(like, escape="\\"),
                ),
            )
        )
    else:
        q = q.where(Channel.is_public.is_(True))
    rows = await session.execute(q.order_by(Stream.viewer_count.desc(), Channel.slug).limit(limit))
    return [LiveChannel(*row) for row in rows.all()]


async def record_raid(
    session: AsyncSession,
    from_channel_id: int,
    to_channel_id: int,
    by_user_id: int,
    viewers: int,
    now: datetime,
) -> Raid:
    raid = Raid(
        from_channel_id=from_channel_id,
        to_channel_id=to_channel_id,
        by_user_id=by_user_id,
        viewers=viewers,
        created_at=now,
    )
    session.add(raid)
    await session.flush()
    return raid


async def last_raid_at(session: AsyncSession, from_channel_id: int) -> datetime | None:
    """When the channel last raided (its cooldown starts there)."""
    return (
        await session.execute(
            select(func.max(Raid.created_at)).where(Raid.from_channel_id == from_channel_id)
        )
    ).scalar_one_or_none()


async def list_raids(session: AsyncSession, channel_id: int, limit: int) -> list[dict[str, Any]]:
    """The channel's newest raids, made and received, newest first."""
    src, dst = aliased(Channel), aliased(Channel)
    rows = await session.execute(
        select(Raid, src.slug, dst.slug, User.username)
        .join(src, src.id == Raid.from_channel_id)
        .join(dst, dst.id == Raid.to_channel_id)
        .outerjoin(User, User.id == Raid.by_user_id)
        .where(or_(Raid.from_channel_id == channel_id, Raid.to_channel_id == channel_id))
        .order_by(Raid.created_at.desc(), Raid.id.desc())
        .limit(limit)
    )
    return [
        {
            "id": raid.id,
            "direction": "out" if raid.from_channel_id == channel_id else "in",
            "from": src_slug,
            "to": dst_slug,
            "by": by,
            "viewers": raid.viewers,
            "created_at": raid.created_at.isoformat(),
        }
        for raid, src_slug, dst_slug, by in rows.all()
    ]


async def get_raid(session: AsyncSession, raid_id: int) -> dict[str, Any] | None:
    """One raid with both channels' slug and name (the arrival notice reads it)."""
    src, dst = aliased(Channel), aliased(Channel)
    row = (
        await session.execute(
            select(Raid, src.slug, src.name, dst.slug, dst.name, User.username)
            .join(src, src.id == Raid.from_channel_id)
            .join(dst, dst.id == Raid.to_channel_id)
            .outerjoin(User, User.id == Raid.by_user_id)
            .where(Raid.id == raid_id)
        )
    ).first()
    if row is None:
        return None
    raid, from_slug, from_name, to_slug, to_name, by = row
    return {
        "id": raid.id,
        "from": {"slug": from_slug, "name": from_name},
        "to": {"slug": to_slug, "name": to_name},
        "by": by,
        "viewers": raid.viewers,
        "created_at": raid.created_at.isoformat(),
    }
