"""A channel's restreaming destinations: checks of what a creator types, and the queries.

The stream key is write-only for everyone but the relay: the API and pages show
:func:`key_hint` (its last four characters), and nothing here puts a key in an error message.
Only the syntax of the ingest URL is checked here; whether its host may be reached (private
addresses) is the relay's check at every attempt, where the name is resolved.

Like ``storage.follows``: every function takes an ``AsyncSession``, flushes, never commits.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import NotFoundError, ValidationError
from storage.models import utcnow
from storage.restream_models import ORIGINAL, PRESET_URLS, PRESETS, RestreamDestination

NAME_LENGTH = 64
URL_COLUMN_LENGTH = 1024
KEY_COLUMN_LENGTH = 512
CA_FILE_LENGTH = 1024
_SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


def key_hint(key: str) -> str:
    """What anyone but the relay sees of a stream key: its last four characters."""
    return key[-4:] if len(key) > 8 else ""


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("the name is required")
    name = name.strip()
    if len(name) > NAME_LENGTH or not name.isprintable():
        raise ValidationError(f"the name may be at most {NAME_LENGTH} printable characters")
    return name


def check_preset(preset: Any) -> str:
    if preset not in PRESETS:
        raise ValidationError(f"the preset must be one of {', '.join(PRESETS)}")
    return str(preset)


def check_url(url: Any, max_length: int = URL_COLUMN_LENGTH) -> str:
    """An ``rtmp://`` or ``rtmps://`` server URL with a host and an application path."""
    if not isinstance(url, str) or not url.strip():
        raise ValidationError("the ingest URL is required")
    url = url.strip()
    limit = min(max_length, URL_COLUMN_LENGTH)
    if len(url) > limit:
        raise ValidationError(f"the ingest URL may be at most {limit} characters")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise ValidationError("the ingest URL may hold only printable ASCII without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValidationError("the ingest URL is malformed (bad host or port)") from None
    if parts.scheme.lower() not in ("rtmp", "rtmps"):
        raise ValidationError("the ingest URL must start with rtmp:// or rtmps://")
    if not parts.hostname:
        raise ValidationError("the ingest URL must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("the ingest URL may not carry a user name or password")
    if parts.fragment or port == 0:
        raise ValidationError("the ingest URL may not have a #fragment or port 0")
    if not parts.path.strip("/"):
        raise ValidationError("the ingest URL needs an application path (rtmp://host/app)")
    return url


def check_key(key: Any, max_length: int = KEY_COLUMN_LENGTH) -> str:
    if not isinstance(key, str) or not key.strip():
        raise ValidationError("the stream key is required")
    key = key.strip()
    limit = min(max_length, KEY_COLUMN_LENGTH)
    if len(key) > limit:
        raise ValidationError(f"the stream key may be at most {limit} characters")
    if not key.isascii() or not key.isprintable() or " " in key:
        raise ValidationError("the stream key may hold only printable ASCII without spaces")
    return key


def check_source(source: Any, rungs: Iterable[str]) -> str:
    """``original`` or the name of one of ``rungs`` (the channel's ladder)."""
    if not isinstance(source, str) or not _SOURCE.match(source):
        raise ValidationError("the source must be 'original' or the name of a rung")
    names = list(rungs)
    if source != ORIGINAL and source not in names:
        choices = ", ".join([ORIGINAL, *names])
        raise ValidationError(f"the source must be one of {choices}")
    return source


def check_ca_file(name: Any) -> str | None:
    """A CA file is named by its file name in the operator's restream.ca_dir, never by a path:
    a creator must not make the server read a file of the creator's choosing."""
    if name is None or name == "":
        return None
    if (
        not isinstance(name, str)
        or len(name) > CA_FILE_LENGTH
        or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", name)
    ):
        raise ValidationError(
            "the CA file must be the name of a file in the server's CA directory "
            "(letters, digits, '.', '_', '-'; no path)"
        )
    return name


async def list_destinations(
    session: AsyncSession, channel_id: int
) -> Sequence[RestreamDestination]:
    rows = await session.scalars(
        select(RestreamDestination)
        .where(RestreamDestination.channel_id == channel_id)
        .order_by(RestreamDestination.id)
    )
    return rows.all()


async def enabled_destinations(
    session: AsyncSession, channel_ids: Sequence[int]
) -> Sequence[RestreamDestination]:
    """The enabled destinations of these channels (the relay's look each refresh)."""
    if not channel_ids:
        return []
    rows = await session.scalars(_enabled_destinations(), {"ids": list(channel_ids)})
    return rows.all()


@functools.cache
def _enabled_destinations() -> Select[RestreamDestination]:
    """Built once: the restream manager runs it every ``restream.refresh_interval`` while any
    stream is live, and building the select cost more than running it."""
    return (
        select(RestreamDestination)
        .where(
            RestreamDestination.channel_id.in_(bindparam("ids", expanding=True)),
            RestreamDestination.enabled.is_(True),
        )
        .order_by(RestreamDestination.id)
    )


async def get_destination(
    session: AsyncSession, channel_id: int, destination_id: int
) -> RestreamDestination:
    row = await session.get(RestreamDestination, destination_id)
    if row is None or row.channel_id != channel_id:
        raise NotFoundError("no such destination")
    return row


async def create_destination(
    session: AsyncSession,
    channel_id: int,
    *,
    name: str,
    preset: str,
    ingest_url: str | None,
    stream_key: str,
    enabled: bool = True,
    source: str = ORIGINAL,
    ca_file: str | None = None,
    max_per_channel: int = 10,
) -> RestreamDestination:
    """A new destination; a preset other than ``custom`` fills in its platform's URL."""
    preset = check_preset(preset)
    url = PRESET_URLS.get(preset) if preset != "custom" else check_url(ingest_url)
    assert url is not None
    count = await session.scalar(
        select(func.count())
        .select_from(RestreamDestination)
        .where(RestreamDestination.channel_id == channel_id)
    )
    if (count or 0) >= max_per_channel:
        raise ValidationError(f"a channel may have at most {max_per_channel} destinations")
    row = RestreamDestination(
        channel_id=channel_id,
        name=check_name(name),
        preset=preset,
        ingest_url=url,
        stream_key=check_key(stream_key),
        enabled=enabled,
        source=source,
        ca_file=check_ca_file(ca_file),
    )
    session.add(row)
    await session.flush()
    return row


async def update_destination(
    session: AsyncSession,
    row: RestreamDestination,
    *,
    name: str | None = None,
    preset: str | None = None,
    ingest_url: str | None = None,
    stream_key: str | None = None,
    enabled: bool | None = None,
    source: str | None = None,
    ca_file: str | None = None,
    clear_ca_file: bool = False,
) -> RestreamDestination:
    """Change what is given; a preset (other than custom) sets its URL again."""
    if name is not None:
        row.name = check_name(name)
    if preset is not None:
        row.preset = check_preset(preset)
        if preset != "custom":
            row.ingest_url = PRESET_URLS[preset]
    if ingest_url is not None:
        if row.preset != "custom":
            raise ValidationError("the ingest URL is the preset's: choose 'custom' to set it")
        row.ingest_url = check_url(ingest_url)
    if stream_key is not None:
        row.stream_key = check_key(stream_key)
    if enabled is not None:
        row.enabled = enabled
    if source is not None:
        row.source = source
    if clear_ca_file:
        row.ca_file = None
    elif ca_file is not None:
        row.ca_file = check_ca_file(ca_file)
    row.updated_at = utcnow()
    await session.flush()
    return row


async def delete_destination(session: AsyncSession, channel_id: int, destination_id: int) -> None:
    row = await get_destination(session, channel_id, destination_id)
    await session.delete(row)
    await session.flush()


__all__ = [
    "check_ca_file",
    "check_key",
    "check_name",
    "check_preset",
    "check_source",
    "check_url",
    "create_destination",
    "delete_destination",
    "enabled_destinations",
    "get_destination",
    "key_hint",
    "list_destinations",
    "update_destination",
]
