"""The pages that keep the emote sets: ``/dashboard/admin/emotes`` (the global set, admins) and
``/dashboard/channels/{slug}/emotes`` (a channel's, its owner or an admin; linked from the
dashboard). Plain multipart forms with the page's CSRF token: add (code, image, follower-only),
rename or switch follower-only, delete. A refused change shows the page again with the message
and what was typed; every change is the same call the JSON API makes."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from storage import emotes as store
from storage.models import User

from ..errors import ApiError
from ..identity import require_admin, require_page_user
from ..keys import DB_KEY, SETTINGS_KEY
from ..parsing import path_id, read_form
from ..render import form_text, message_of, redirect, render
from .common import GLOBAL, Scope, add_emote, change_emote, flag, managed_channel, remove_emote
from .sets import SETS_KEY

ADMIN_PAGE = "/dashboard/admin/emotes"
NOTICES = {"added": "Emote added.", "saved": "Emote saved.", "deleted": "Emote deleted."}


def _base(scope: Scope) -> str:
    return ADMIN_PAGE if scope.channel_id is None else f"/dashboard/channels/{scope.slug}/emotes"


async def _scope(request: web.Request) -> tuple[User, Scope]:
    """The page's user and set: 403 for a non-admin on the admin page or someone else's
    channel (as the chat settings page does), 404 for an unknown channel."""
    user = await require_page_user(request)
    slug = request.match_info.get("slug")
    try:
        if slug is None:
            require_admin(user)
            return user, GLOBAL
        async with request.app[DB_KEY].session() as session:
            channel = await managed_channel(session, slug, user)
    except ApiError as exc:
        if exc.status == 404:
            raise web.HTTPNotFound() from None
        raise web.HTTPForbidden(text=exc.message) from None
    return user, Scope(channel.id, channel.slug)


async def _page(
    request: web.Request,
    scope: Scope,
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, Any] | None = None,
) -> web.Response:
    sets = request.app[SETS_KEY]
    channel = scope.channel_id is not None
    emotes = (
        await sets.channel_emotes(scope.channel_id)  # type: ignore[arg-type]
        if channel
        else await sets.global_emotes()
    )
    limits = request.app[SETTINGS_KEY].emotes
    notice = next((text for key, text in NOTICES.items() if key in request.query), None)
    response = render(
        request,
        "emotes/manage.html",
        {
            "slug": scope.slug,
            "base": _base(scope),
            "emotes": emotes,
            "limit": limits.channel_limit if channel else limits.global_limit,
            "max_kb": limits.max_bytes // 1024,
            "code_max": store.CODE_MAX,
            "code_rule": store.CODE_RULE,
            "error": error,
            "notice": None if error else notice,
            "form": form or {},
        },
        status=status,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def manage_page(request: web.Request) -> web.StreamResponse:
    _, scope = await _scope(request)
    return await _page(request, scope)


async def add_submit(request: web.Request) -> web.StreamResponse:
    user, scope = await _scope(request)
    form = await read_form(request)
    code = form_text(form, "code")
    try:
        value = form.get("file")
        data = None
        if isinstance(value, FileField):
            data = value.file.read(request.app[SETTINGS_KEY].emotes.max_bytes + 1) or None
        follower_only = flag(form_text(form, "follower_only"), "follower_only")
        await add_emote(request.app, user, scope, code, data, follower_only)
    except Exception as exc:  # message_of re-raises what is not the user's
        status, message = message_of(exc)
        return await _page(request, scope, status=status, error=message, form={"code": code})
    return redirect(f"{_base(scope)}?added=1")


async def edit_submit(request: web.Request) -> web.StreamResponse:
    user, scope = await _scope(request)
    emote_id = path_id(request, "emote_id", "emote")
    form = await read_form(request)
    action = form_text(form, "action") or "save"
    try:
        if action == "save":
            follower_only = (
                flag(form_text(form, "follower_only"), "follower_only")
                if scope.channel_id is not None
                else None
            )
            await change_emote(request.app, user, emote_id, form_text(form, "code"), follower_only)
        elif action == "delete":
            await remove_emote(request.app, user, emote_id)
        else:
            raise ApiError(400, "invalid", f"unknown action {action[:40]!r}")
    except Exception as exc:  # message_of re-raises what is not the user's
        status, message = message_of(exc)
        return await _page(request, scope, status=status, error=message)
    return redirect(f"{_base(scope)}?{'deleted' if action == 'delete' else 'saved'}=1")


def setup_routes(app: web.Application) -> None:
    for base in (ADMIN_PAGE, "/dashboard/channels/{slug}/emotes"):
        app.router.add_get(base, manage_page)
        app.router.add_post(base, add_submit)
        app.router.add_post(base + "/{emote_id}", edit_submit)
