"""The dashboard's raids page of a channel, ``/dashboard/channels/{slug}/raids``: who may raid
the channel, the chat's typing indicators, a picker of live channels to raid, and the raids
made and received. Rendered here, acted on through the JSON API by raids.js."""

from __future__ import annotations

from aiohttp import web

from storage import raids as raid_store

from ..identity import require_page_user
from ..keys import CHAT_KEY, DB_KEY, SETTINGS_KEY
from ..render import not_found_page, render
from .raiding import require_owner

PAGE = "/dashboard/channels/{slug}/raids"


async def raids_page(request: web.Request) -> web.StreamResponse:
    user = await require_page_user(request)
    slug = request.match_info["slug"]
    state = await request.app[CHAT_KEY].state(slug)
    if state is None:
        return not_found_page(request, "channel")
    require_owner(state, user)
    rs = request.app[SETTINGS_KEY].raids
    async with request.app[DB_KEY].session() as session:
        extras = await raid_store.get_extras(session, state.channel_id)
        raids = await raid_store.list_raids(session, state.channel_id, rs.history_max)
    response = render(
        request,
        "raids/page.html",
        {
            "slug": slug,
            "settings": extras.as_dict(),
            "raids": raids,
            "after_end_minutes": f"{rs.after_end_seconds / 60:g}",
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def setup_routes(app: web.Application) -> None:
    app.router.add_get(PAGE, raids_page, name="raids-page")
