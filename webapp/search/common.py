"""What the search API and the search page share: reading the parameters (each kind of bad
input a 400 in the error shape) and the hits as JSON documents and as cards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from mediaserver.settings import SearchSettings
from storage.search import (
    SEARCH_TYPES,
    CategoryHit,
    ChannelHit,
    SearchLimits,
    UserHit,
    VideoHit,
)

from ..errors import ApiError
from ..identity import upload_url
from ..keys import SETTINGS_KEY
from ..parsing import query_int
from ..sharing import duration_text, live_thumbnail_url

# Where a broadcast keeps its own last frame (served at /thumbnails/streams/<id>.jpg).
STREAM_THUMBNAILS = "thumbnails/streams/"
# Longest cursor accepted (the ones handed out are under 100 characters).
MAX_CURSOR_CHARS = 512


@dataclass(frozen=True)
class SearchParams:
    q: str
    kind: str
    limit: int
    cursor: str | None


def settings_of(request: web.Request) -> SearchSettings:
    return request.app[SETTINGS_KEY].search


def limits_of(s: SearchSettings) -> SearchLimits:
    return SearchLimits(
        max_words=s.max_words,
        candidates=s.candidates,
        fuzzy_below=s.fuzzy_below,
        fuzzy_candidates=s.fuzzy_candidates,
    )


def read_query(request: web.Request, *, cut: bool = False) -> str:
    """``?q=``: a 400 past ``search.max_query_chars`` (the page cuts it instead)."""
    q = request.query.get("q", "")
    most = settings_of(request).max_query_chars
    if len(q) > most:
        if cut:
            return q[:most]
        raise ApiError(400, "invalid", f"the query parameter 'q' may be at most {most} characters")
    return q


def read_params(request: web.Request, *, page: bool = False) -> SearchParams:
    s = settings_of(request)
    q = read_query(request, cut=page)
    kind = request.query.get("type", "channels") or "channels"
    if kind not in SEARCH_TYPES:
        if page:
            kind = "channels"
        else:
            raise ApiError(
                400,
                "invalid",
                f"the query parameter 'type' must be one of {', '.join(SEARCH_TYPES)}",
            )
    limit = query_int(request, "limit", s.page_size, minimum=1, maximum=s.page_max)
    cursor = request.query.get("cursor") or None
    if cursor is not None and len(cursor) > MAX_CURSOR_CHARS:
        raise ApiError(400, "invalid", "the query parameter 'cursor' is not a search cursor")
    return SearchParams(q=q, kind=kind, limit=limit, cursor=cursor)


def bad_cursor() -> ApiError:
    return ApiError(400, "invalid", "the query parameter 'cursor' is not a cursor of this search")


def _video_thumbnail(hit: VideoHit) -> str | None:
    if (hit.thumbnail_path or "").startswith(STREAM_THUMBNAILS):
        return f"/thumbnails/streams/{hit.id}.jpg"
    return None


def hit_json(app: web.Application, hit: Any) -> dict[str, Any]:
    """One hit as the API returns it (and the page's cards read)."""
    if isinstance(hit, ChannelHit):
        return {
            "type": "channel",
            "id": hit.id,
            "slug": hit.slug,
            "name": hit.name,
            "title": hit.title,
            "owner": hit.owner,
            "live": hit.live,
            "viewers": hit.viewers,
            "followers": hit.followers,
            "category": hit.category,
            "tags": hit.tags,
            "url": f"/streams/{hit.slug}",
            "avatar_url": upload_url(hit.avatar_path),
            "thumbnail_url": live_thumbnail_url(app, hit.slug) if hit.live else None,
        }
    if isinstance(hit, UserHit):
        return {
            "type": "user",
            "id": hit.id,
            "username": hit.username,
            "display_name": hit.display_name,
            "url": f"/u/{hit.username}",
            "avatar_url": upload_url(hit.avatar_path),
        }
    if isinstance(hit, CategoryHit):
        return {
            "type": "category",
            "id": hit.id,
            "slug": hit.slug,
            "name": hit.name,
            "url": f"/categories/{hit.slug}",
            "box_art_url": upload_url(hit.box_art_path),
        }
    assert isinstance(hit, VideoHit)
    return {
        "type": "video",
        "id": hit.id,
        "title": hit.title,
        "channel": hit.channel_slug,
        "channel_name": hit.channel_name,
        "category": hit.category,
        "started_at": hit.started_at.isoformat() if hit.started_at else None,
        "duration_seconds": hit.duration_seconds,
        "duration": duration_text(hit.duration_seconds),
        "url": f"/videos/{hit.id}" if hit.vod_available else f"/streams/{hit.channel_slug}",
        "thumbnail_url": _video_thumbnail(hit),
    }
