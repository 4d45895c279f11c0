"""Moderation pages: a channel's chat settings (``/dashboard/channels/{slug}/chat``) and the
report queue (``/dashboard/reports``). They render server-side and act through the JSON API
(chat-admin.js sends the CSRF header), so the page and the API can never disagree."""

from __future__ import annotations

from aiohttp import web

from storage import channels as channel_queries
from storage import chat as chat_store
from storage import reports as report_store
from storage.models import ReportStatus

from ..identity import require_page_user
from ..keys import CHAT_KEY, DB_KEY
from ..render import not_found_page, render
from .reports_api import moderated_channel_ids


async def chat_settings_page(request: web.Request) -> web.StreamResponse:
    user = await require_page_user(request)
    slug = request.match_info["slug"]
    service = request.app[CHAT_KEY]
    state = await service.state(slug)
    if state is None:
        return not_found_page(request, "channel")
    if not (user.is_admin or user.id == state.owner_id or user.id in state.moderators):
        raise web.HTTPForbidden(text="only the channel owner, its moderators and admins")
    async with request.app[DB_KEY].session() as session:
        mods = await chat_store.list_moderators(session, state.channel_id)
        bans = await chat_store.list_bans(session, state.channel_id)
    return render(
        request,
        "chat_settings.html",
        {
            "slug": slug,
            "settings": chat_store.chat_settings_dict(state),
            "moderators": mods,
            "bans": bans,
            "is_owner": user.is_admin or user.id == state.owner_id,
            "max_slow_mode": service.cs.max_slow_mode_seconds,
        },
    )


async def reports_page(request: web.Request) -> web.StreamResponse:
    user = await require_page_user(request)
    ids = await moderated_channel_ids(request, user)
    wanted = request.query.get("status", "open")
    status = ReportStatus.OPEN if wanted != "all" else None
    async with request.app[DB_KEY].session() as session:
        reports = await report_store.channel_reports(session, ids, status=status)
        slugs = await channel_queries.channel_slugs(session, ids)
    return render(
        request,
        "reports.html",
        {"reports": reports, "channels": slugs, "show_all": wanted == "all"},
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard/channels/{slug}/chat", chat_settings_page, name="chat-settings")
    app.router.add_get("/dashboard/reports", reports_page, name="reports")
