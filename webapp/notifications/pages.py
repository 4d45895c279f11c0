"""Notification pages: ``/notifications`` (the list, newest first, a page at a time, mark one
or all read), ``/dashboard/notifications`` (email preferences) and the signed unsubscribe link
of every email (``/notifications/unsubscribe``: GET asks, POST unsubscribes; mail clients POST
it directly, RFC 8058 one-click). Forms post back and redirect (no script needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from aiohttp import web

from storage import notifications as store

from ..identity import require_page_user
from ..keys import DB_KEY, SECRET_KEY, SETTINGS_KEY
from ..parsing import parse_id, path_id, query_int, read_form
from ..render import form_text, redirect, render
from .api import notification_json
from .mailer import UNSUBSCRIBE_PATH, check_unsubscribe
from .state import NOTIFY_KEY


async def notifications_page(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    size = request.app[SETTINGS_KEY].notifications.page_size
    before = query_int(request, "before", minimum=1)
    async with request.app[DB_KEY].session() as session:
        rows = await store.page(session, user.id, size + 1, before)
        unread = await store.unread_count(session, user.id)
    more = len(rows) > size
    rows = rows[:size]
    return render(
        request,
        "notifications.html",
        {
            "items": [notification_json(r) for r in rows],
            "unread": unread,
            "next_before": rows[-1].id if more else None,
            "first_page": before is None,
            "back": request.path_qs,
        },
    )


def _back(form: object, fallback: str = "/notifications") -> str:
    """Where a list form returns to: the page it was posted from (a local path only)."""
    target = form_text(form, "back")
    return target if target.startswith("/notifications") else fallback


async def mark_read_submit(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    notification_id = path_id(request, "id", "notification")
    form = await read_form(request)
    async with request.app[DB_KEY].session() as session:
        await store.mark_read(session, user.id, notification_id, datetime.now(UTC))
        await session.commit()
        unread = await store.unread_count(session, user.id)
    request.app[NOTIFY_KEY].hub.push(user.id, unread)
    return redirect(_back(form))


async def mark_all_submit(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    form = await read_form(request)
    async with request.app[DB_KEY].session() as session:
        await store.mark_all_read(session, user.id, datetime.now(UTC))
        await session.commit()
    request.app[NOTIFY_KEY].hub.push(user.id, 0)
    return redirect(_back(form))


# -- email preferences --------------------------------------------------------------------------


async def settings_page(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    async with request.app[DB_KEY].session() as session:
        prefs = await store.email_prefs(session, user.id)
    settings = request.app[SETTINGS_KEY]
    return render(
        request,
        "notification_settings.html",
        {
            "prefs": prefs,
            "email": user.email,
            "email_enabled": bool(settings.email.smtp_host),
            "digest_hours": settings.email.digest_interval / 3600,
            "saved": request.query.get("saved") == "1",
        },
    )


async def settings_submit(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    form = await read_form(request)
    async with request.app[DB_KEY].session() as session:
        await store.set_email_prefs(
            session,
            user.id,
            datetime.now(UTC),
            email_go_live=form_text(form, "email_go_live") == "on",
            email_digest=form_text(form, "delivery") == "digest",
        )
        await session.commit()
    return redirect("/dashboard/notifications?saved=1")


# -- one-click unsubscribe -----------------------------------------------------------------------


def _signed_user(request: web.Request, user_raw: str, token: str) -> int | None:
    user_id = parse_id(user_raw)
    if (
        user_id is None
        or not token
        or not check_unsubscribe(request.app[SECRET_KEY], user_id, token)
    ):
        return None
    return user_id


def _bad_link(request: web.Request) -> web.Response:
    return render(request, "unsubscribe.html", {"state": "bad"}, status=400)


async def unsubscribe_page(request: web.Request) -> web.Response:
    user_raw, token = request.query.get("u", ""), request.query.get("t", "")
    user_id = _signed_user(request, user_raw, token)
    if user_id is None:
        return _bad_link(request)
    return render(
        request,
        "unsubscribe.html",
        {"state": "ask", "action": f"{UNSUBSCRIBE_PATH}?{urlencode({'u': user_id, 't': token})}"},
    )


async def unsubscribe_submit(request: web.Request) -> web.Response:
    # The link's own query (a mail client's one-click POST), else the confirm form's fields.
    form = await read_form(request)
    user_raw = request.query.get("u") or form_text(form, "u")
    token = request.query.get("t") or form_text(form, "t")
    user_id = _signed_user(request, user_raw, token)
    if user_id is None:
        return _bad_link(request)
    async with request.app[DB_KEY].session() as session:
        if await store.user_for_unsubscribe(session, user_id) is None:
            return _bad_link(request)
        await store.set_email_prefs(session, user_id, datetime.now(UTC), email_go_live=False)
        await session.commit()
    return render(request, "unsubscribe.html", {"state": "done"})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/notifications", notifications_page)
    app.router.add_post("/notifications/read-all", mark_all_submit)
    app.router.add_post("/notifications/{id}/read", mark_read_submit)
    app.router.add_get(UNSUBSCRIBE_PATH, unsubscribe_page)
    app.router.add_post(UNSUBSCRIBE_PATH, unsubscribe_submit)
    app.router.add_get("/dashboard/notifications", settings_page)
    app.router.add_post("/dashboard/notifications", settings_submit)
