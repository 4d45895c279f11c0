"""HTML pages for accounts: sign up, log in, log out, onboarding.

Plain forms posting back to the same URL (they work without JavaScript); failures re-render
the form with the message and the right status, successes redirect (POST-redirect-GET).
Register and login share their rules with the JSON API through ``webapp.auth.login``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from storage import accounts
from storage.errors import ConflictError, ValidationError

from .. import images
from ..errors import ApiError
from ..identity import (
    account_changed,
    current_user,
    end_session,
    require_page_user,
    set_current_user,
    set_session_cookie,
    start_session,
)
from ..keys import DB_KEY
from ..parsing import read_form
from ..render import form_text, message_of, redirect, render
from .login import authenticate, register_user

AFTER_LOGIN = "/dashboard"


def safe_next(value: object, default: str = AFTER_LOGIN) -> str:
    """A local path to go to after login; anything that could leave the site is ignored."""
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 32 for c in value)
        or len(value) > 2000
    ):
        return default
    return value


async def register_page(request: web.Request) -> web.Response:
    if await current_user(request) is not None:
        raise web.HTTPSeeOther(AFTER_LOGIN)
    return render(request, "auth/register.html", {"error": None, "form": {}})


async def register_submit(request: web.Request) -> web.Response:
    form = await read_form(request)
    values = {k: form_text(form, k) for k in ("username", "email")}
    try:
        user = await register_user(
            request,
            form_text(form, "username").strip(),
            form_text(form, "email"),
            form_text(form, "password"),
        )
    except (ApiError, ValidationError, ConflictError) as exc:
        status, message = message_of(exc)
        return render(
            request, "auth/register.html", {"error": message, "form": values}, status=status
        )
    token = await start_session(request, user)
    response = redirect("/auth/onboard")
    set_session_cookie(request, response, token)
    return response


async def login_page(request: web.Request) -> web.Response:
    next_url = safe_next(request.query.get("next"))
    if await current_user(request) is not None:
        raise web.HTTPSeeOther(next_url)
    return render(request, "auth/login.html", {"error": None, "username": "", "next": next_url})


async def login_submit(request: web.Request) -> web.Response:
    form = await read_form(request)
    next_url = safe_next(form.get("next"))
    username = form_text(form, "username")
    try:
        user = await authenticate(request, username, form_text(form, "password"))
    except ApiError as exc:
        response = render(
            request,
            "auth/login.html",
            {"error": exc.message, "username": username, "next": next_url},
            status=exc.status,
        )
        response.headers.update(exc.headers)
        return response
    token = await start_session(request, user)
    response = redirect(next_url)
    set_session_cookie(request, response, token)
    return response


async def logout_submit(request: web.Request) -> web.Response:
    user = await current_user(request)
    response = redirect("/")
    await end_session(request, response)
    if user is not None:
        account_changed(request.app, user.id)  # chat sockets of this session stop at once
    return response


async def onboard_page(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    return render(request, "auth/onboard.html", {"error": None, "user": user, "form": {}})


async def onboard_submit(request: web.Request) -> web.Response:
    """Username, display name, bio and an optional avatar, all checked before anything is
    saved, so a bad avatar does not leave a half-finished profile behind."""
    user = await require_page_user(request)
    form = await read_form(request)
    values = {k: form_text(form, k) for k in ("username", "display_name", "bio")}
    try:
        changes = accounts.clean_profile_changes(
            {"display_name": values["display_name"], "bio": values["bio"]}
        )
        avatar = None
        data = await images.read_upload(request, "avatar")
        if data:  # an empty file input sends a part with no bytes
            avatar = await images.prepare_upload(request.app, data, "avatar")
        async with request.app[DB_KEY].session() as session:
            row = await accounts.get_user_with_profile(session, user.id)
            assert row is not None
            await accounts.rename_user(session, row, values["username"].strip())
            await accounts.update_profile(session, row, changes)
            await accounts.mark_onboarded(session, row, datetime.now(UTC))
            await session.commit()
        if avatar is not None:
            set_current_user(request, await images.set_profile_image(request.app, user.id, avatar))
    except (ApiError, ValidationError, ConflictError) as exc:
        status, message = message_of(exc)
        return render(
            request,
            "auth/onboard.html",
            {"error": message, "user": user, "form": values},
            status=status,
        )
    return redirect("/dashboard/profile?welcome=1")


def setup(app: web.Application) -> None:
    app.router.add_get("/auth/register", register_page)
    app.router.add_post("/auth/register", register_submit)
    app.router.add_get("/auth/login", login_page)
    app.router.add_post("/auth/login", login_submit)
    app.router.add_post("/auth/logout", logout_submit)
    app.router.add_get("/auth/onboard", onboard_page)
    app.router.add_post("/auth/onboard", onboard_submit)
