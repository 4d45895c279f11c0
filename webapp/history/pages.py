"""``/dashboard/history``: the logged-in user's watch history, newest first, with "Delete"
on each entry and "Clear history" (plain forms with the CSRF token, so the page works without
JavaScript), and ``?before=`` for older entries."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import history as history_queries

from ..identity import require_page_user
from ..keys import DB_KEY, SETTINGS_KEY
from ..parsing import parse_id, query_int
from ..render import redirect, render
from .api import clear_all, delete_one, entry_json

PAGE = "/dashboard/history"


def watched_text(seconds: int) -> str:
    """ "1 h 05 min", "12 min", "40 s"."""
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


async def history_page(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    limits = request.app[SETTINGS_KEY].history
    before = query_int(request, "before", minimum=1)
    async with request.app[DB_KEY].session() as session:
        entries = await history_queries.list_history(
            session, user.id, limit=limits.page_size + 1, before_id=before
        )
    more = len(entries) > limits.page_size
    entries = entries[: limits.page_size]
    rows: list[dict[str, Any]] = []
    for entry in entries:
        row = entry_json(entry)
        row["when"] = entry.started_at.strftime("%Y-%m-%d %H:%M UTC")
        row["watched"] = watched_text(entry.watched_seconds)
        rows.append(row)
    response = render(
        request,
        "dashboard_history.html",
        {
            "entries": rows,
            "older": f"{PAGE}?before={entries[-1].id}" if more and entries else None,
            "paged": before is not None,
            "flush_interval": int(request.app[SETTINGS_KEY].history.flush_interval),
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def clear_page(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    await clear_all(request, user.id)
    return redirect(PAGE)


async def delete_page(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    entry_id = parse_id(request.match_info["id"])
    if entry_id is not None:
        await delete_one(request, user.id, entry_id)  # not yours or gone: nothing to do
    return redirect(PAGE)


def setup_routes(app: web.Application) -> None:
    app.router.add_get(PAGE, history_page)
    app.router.add_post(f"{PAGE}/clear", clear_page)
    app.router.add_post(PAGE + "/{id}/delete", delete_page)
