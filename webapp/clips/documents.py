"""A clip as the API and the pages describe it, and the checks every way of making one shares."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from mediaserver.settings import ClipSettings
from storage import clips as clip_queries
from storage.clips import ClipInfo
from storage.models import User

from ..errors import ApiError
from ..identity import current_user
from ..parsing import field
from . import media

TITLE_MAX = 140


def media_url(public_id: str, name: str) -> str:
    return f"/clips/{public_id}/media/{name}"


def clip_json(info: ClipInfo, files: dict[str, str] | None = None) -> dict[str, Any]:
    """``files``: the cut's manifest (ready clips), relative to ``out/``."""
    clip, channel = info.clip, info.channel
    pid = clip.public_id
    document: dict[str, Any] = {
        "id": pid,
        "title": clip.title,
        "status": clip.status,
        "source": clip.source,
        "visibility": clip_queries.visibility(channel, info.stream),
        "channel": {"slug": channel.slug, "name": channel.name, "url": f"/streams/{channel.slug}"},
        "clipper": None
        if info.clipper_username is None
        else {"username": info.clipper_username, "name": info.clipper},
        "start": clip.start_seconds,
        "end": clip.end_seconds,
        "duration": clip.duration_seconds,
        "views": clip.views,
        "created_at": clip.created_at.isoformat(),
        "published_at": clip.published_at.isoformat() if clip.published_at else None,
        "url": f"/clips/{pid}",
        "embed_url": f"/embed/clips/{pid}",
        "edit_url": f"/clips/{pid}/edit" if clip.status == "draft" else None,
        "hls_url": None,
        "mp4_url": None,
        "thumbnail_url": None,
        "error": clip.error if clip.status == "failed" else None,
    }
    if clip.status == "draft":
        document["hls_url"] = media_url(pid, f"{media.DRAFT}/master.m3u8")
    elif clip.status == "ready" and files is not None:
        document["hls_url"] = media_url(pid, f"{media.OUT}/{files['hls']}")
        document["mp4_url"] = media_url(pid, f"{media.OUT}/{files['mp4']}")
        document["thumbnail_url"] = media_url(pid, f"{media.OUT}/{files['thumbnail']}")
    return document


def parse_title(body: dict[str, Any], default: str | None = None) -> str:
    raw = field(body, "title", str, required=default is None, default=default)
    title = " ".join(str(raw).split())
    if not title:
        raise ApiError(400, "invalid", "the title must not be empty")
    if len(title) > TITLE_MAX:
        raise ApiError(400, "invalid", f"the title must be at most {TITLE_MAX} characters")
    return title


def parse_range(
    body: dict[str, Any], limits: ClipSettings, lowest: float, highest: float
) -> tuple[float, float]:
    """``start`` and ``end`` (seconds on the source's timeline), within ``lowest..highest``
    and the clip length limits; 400 otherwise."""
    start = float(field(body, "start", (int, float)))
    end = float(field(body, "end", (int, float)))
    if not media.valid_range(start, end):
        raise ApiError(400, "invalid_range", "start must be 0 or more and before end")
    length = end - start
    if length > limits.max_seconds + 1e-6:
        raise ApiError(400, "too_long", f"a clip is at most {limits.max_seconds:g} seconds")
    if length < limits.min_seconds - 1e-6:
        raise ApiError(400, "too_short", f"a clip is at least {limits.min_seconds:g} seconds")
    # A millisecond of slack for the rounding of durations in playlists.
    if start < lowest - 1e-3 or end > highest + 1e-3:
        raise ApiError(
            400,
            "outside_source",
            f"the range must lie within {lowest:.3f}–{highest:.3f} s of the source",
        )
    return max(start, lowest), min(end, highest)


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


async def viewer(request: web.Request) -> tuple[int | None, bool, User | None]:
    user = await current_user(request)
    return (user.id if user else None), bool(user and user.is_admin), user
