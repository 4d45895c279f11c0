"""``/dashboard/videos``: the creator's past broadcasts, channel by channel.

Rendered once with each channel's first page of videos (thumbnail, title, date, duration,
views, size on disk, visibility), its storage used and its video settings;
``static/js/videos.js`` then makes every change through the JSON API (``api``) with the
page's CSRF token, so the page and the API can never disagree about what is allowed.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import channels as channel_queries
from storage import videos as video_queries

from ..identity import require_page_user
from ..keys import DB_KEY, SETTINGS_KEY
from ..parsing import INT64_MAX, query_int
from ..render import render
from .api import settings_json
from .common import video_json


def size_text(size: int | None) -> str:
    """ "1.4 GB", "230 MB", "12 KB"; "?" when never measured."""
    if size is None:
        return "?"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def duration_text(seconds: float | None) -> str:
    if not seconds:
        return ""
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


async def videos_page(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    page = request.app[SETTINGS_KEY].videos.page_size
    # "Older videos" of one channel: ?channel=SLUG&before=ID.
    only = request.query.get("channel") or None
    before = query_int(request, "before", None, minimum=1, maximum=INT64_MAX) if only else None
    entries: list[dict[str, Any]] = []
    async with request.app[DB_KEY].session() as session:
        for channel in await channel_queries.user_channels(session, user.id):
            if only is not None and channel.slug != only:
                continue
            rows = await video_queries.channel_videos(
                session, channel.id, limit=page + 1, before_id=before
            )
            used = await video_queries.storage_used(session, channel.id)
            shown = []
            for stream in rows[:page]:
                doc = video_json(stream, channel, private=True)
                doc["size_text"] = size_text(stream.size_bytes) if not doc["deleted"] else ""
                doc["duration_text"] = duration_text(doc["duration"])
                doc["date_text"] = (
                    stream.started_at.strftime("%Y-%m-%d %H:%M") if stream.started_at else ""
                )
                shown.append(doc)
            entries.append(
                {
                    "slug": channel.slug,
                    "name": channel.name,
                    "videos": shown,
                    "older": (
                        f"/dashboard/videos?channel={channel.slug}&before={rows[page - 1].id}"
                        if len(rows) > page
                        else None
                    ),
                    "storage_bytes": used,
                    "storage_text": size_text(used),
                    "settings": settings_json(request, channel),
                }
            )
    response = render(
        request, "videos/dashboard.html", {"entries": entries, "paged": only is not None}
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard/videos", videos_page, name="dashboard-videos")
