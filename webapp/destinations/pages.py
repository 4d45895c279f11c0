"""The dashboard's destinations page of a channel, ``/dashboard/channels/{slug}/destinations``.

The page lists the destinations and a form to add one; ``destinations.js`` does the rest
through the JSON API (add, enable/disable, change the key, delete) and redraws each
destination's live status every second from ``GET /api/channels/{slug}/destinations``.
"""

from __future__ import annotations

from aiohttp import web

from storage import restream as store
from storage.restream_models import PRESET_URLS, PRESETS

from ..identity import require_page_user
from ..keys import DB_KEY, SETTINGS_KEY
from ..render import render
from .common import destination_json, managed_channel, rung_names, statuses

PAGE = "/dashboard/channels/{slug}/destinations"
PRESET_LABELS = {
    "twitch": "Twitch",
    "youtube": "YouTube",
    "facebook": "Facebook Live",
    "kick": "Kick",
    "custom": "Custom RTMP(S) server",
}


async def destinations_page(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    async with request.app[DB_KEY].session() as session:
        channel = await managed_channel(request, session, user)
        rows = await store.list_destinations(session, channel.id)
    live = statuses(request, channel)
    response = render(
        request,
        "destinations/page.html",
        {
            "channel": channel,
            "destinations": [destination_json(r, live.get(r.id)) for r in rows],
            "presets": [(p, PRESET_LABELS[p], PRESET_URLS.get(p, "")) for p in PRESETS],
            "rungs": rung_names(request, channel),
            "max_per_channel": request.app[SETTINGS_KEY].restream.max_per_channel,
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def setup_routes(app: web.Application) -> None:
    app.router.add_get(PAGE, destinations_page)
