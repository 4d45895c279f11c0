"""The creator dashboard (``/dashboard``); past broadcasts are managed at ``/dashboard/videos``
(``webapp.videos``).

The dashboard is rendered once with the creator's channels, their stream keys (masked until
shown), OBS settings and past streams; ``static/js/dashboard.js`` then polls
``/api/dashboard`` every second for live status, viewers, uptime and health, and performs
every change through the JSON API (create, edit, delete, regenerate key, end stream, upload
or remove the channel's avatar and banner) with the page's CSRF token, so pages and API can never
disagree about what is allowed.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import categories
from storage import channels as channel_queries

from .documents import channel_json, stream_json
from .identity import require_page_user
from .keys import DB_KEY, SETTINGS_KEY
from .render import render

# Past streams listed per channel on the dashboard (the API pages through the rest).
PAST_STREAMS_SHOWN = 20
# How often the dashboard polls /api/dashboard (the issue asks for at most 2 s).
POLL_INTERVAL_MS = 1000


def _render(request: web.Request, template: str, context: dict[str, Any]) -> web.Response:
    response = render(request, template, context)
    response.headers["Cache-Control"] = "no-store"  # carries stream keys
    return response


async def dashboard(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    limits = request.app[SETTINGS_KEY].uploads
    async with request.app[DB_KEY].session() as session:
        channels = await channel_queries.user_channels(session, user.id)
        # The category picker: active entries (a channel's retired one is added on its form).
        catalogue = [c.name for c in await categories.list_categories(session)]
        entries = []
        for channel in channels:
            rows = await channel_queries.list_streams(
                session,
                channel_ids=[channel.id],
                live=False,
                public_only=False,
                listed_only=False,  # the owner's own: unlisted and private videos too
                limit=PAST_STREAMS_SHOWN,
            )
            entries.append(
                {
                    "channel": channel_json(request, channel, user.username, private=True),
                    "past": [stream_json(s, c) for s, c in rows],
                }
            )
    return _render(
        request,
        "dashboard.html",
        {
            "entries": entries,
            "catalogue": catalogue,
            "poll_ms": POLL_INTERVAL_MS,
            "ended_cooldown": request.app[SETTINGS_KEY].rtmp.ended_cooldown,
            # For the avatar/banner forms: the hint, and a check before the file is sent at all.
            "max_upload_bytes": limits.max_bytes,
            "max_upload_mb": round(limits.max_bytes / (1 << 20), 1),
            "banner_box": f"{limits.banner_width}×{limits.banner_height}",
        },
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/dashboard", dashboard, name="dashboard")
