"""JSON API for accounts: register, login, logout, onboarding and the current user.

Cookie clients (the site's own pages) get the session cookie and the CSRF token for later
state-changing calls in the response; scripts use ``Authorization: Bearer`` tokens instead
(``aethex token create`` or the profile page).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from storage import accounts

from ..errors import ApiError
from ..identity import (
    account_changed,
    csrf_token,
    current_user,
    end_session,
    require_user,
    set_current_user,
    set_session_cookie,
    start_session,
    user_json,
)
from ..keys import DB_KEY
from ..openapi import (
    PRIVATE_USER_SCHEMA,
    PUBLIC_USER_SCHEMA,
    USER_ENVELOPE,
    error_response,
    json_body,
    json_response,
)
from ..parsing import field, path_id, read_json
from .login import authenticate, register_user


def _session_body(request: web.Request, user: Any) -> dict[str, Any]:
    return {"user": user_json(user, private=True), "csrf_token": csrf_token(request) or None}


async def register(request: web.Request) -> web.Response:
    body = await read_json(request)
    user = await register_user(
        request, body.get("username"), body.get("email"), body.get("password")
    )
    token = await start_session(request, user)
    response = web.json_response(_session_body(request, user), status=201)
    set_session_cookie(request, response, token)
    return response


async def login(request: web.Request) -> web.Response:
    body = await read_json(request)
    login_name = body.get("username", body.get("email"))
    user = await authenticate(request, login_name, body.get("password"))
    token = await start_session(request, user)
    response = web.json_response(_session_body(request, user))
    set_session_cookie(request, response, token)
    return response


async def logout(request: web.Request) -> web.Response:
    user = await current_user(request)
    response = web.Response(status=204)
    await end_session(request, response)
    if user is not None:
        account_changed(request.app, user.id)  # chat sockets of this session stop at once
    return response


async def me(request: web.Request) -> web.Response:
    user = await require_user(request)
    return web.json_response(_session_body(request, user), headers={"Cache-Control": "no-store"})


async def onboard(request: web.Request) -> web.Response:
    """Finish sign-up: optionally a new username, display name and bio (avatar: upload API)."""
    user = await require_user(request)
    body = await read_json(request)
    unknown = sorted(set(body) - {"username", "display_name", "bio"})
    if unknown:
        raise ApiError(400, "invalid", f"unknown field(s): {', '.join(unknown)}")
    username = field(body, "username", required=False)
    changes = {k: body[k] for k in ("display_name", "bio") if body.get(k) is not None}
    accounts.clean_profile_changes(changes)  # validate everything before changing anything
    async with request.app[DB_KEY].session() as session:
        row = await accounts.get_user_with_profile(session, user.id)
        assert row is not None
        if username is not None:
            await accounts.rename_user(session, row, username)
        await accounts.update_profile(session, row, changes)
        await accounts.mark_onboarded(session, row, datetime.now(UTC))
        await session.commit()
        row = await accounts.get_user_with_profile(session, user.id)
    assert row is not None
    set_current_user(request, row)
    return web.json_response({"user": user_json(row, private=True)})


async def public_user(request: web.Request) -> web.Response:
    user_id = path_id(request, "user_id", "user")
    async with request.app[DB_KEY].session() as session:
        user = await accounts.get_user_with_profile(session, user_id)
    if user is None or user.is_disabled:
        raise ApiError(404, "not_found", f"no user with id {user_id}")
    viewer = await current_user(request)
    own = viewer is not None and (viewer.id == user.id or viewer.is_admin)
    return web.json_response(
        {"user": user_json(user, private=own)}, headers={"Cache-Control": "no-store"}
    )


def setup(app: web.Application) -> None:
    app.router.add_post("/api/auth/register", register)
    app.router.add_post("/api/auth/login", login)
    app.router.add_post("/api/auth/logout", logout)
    app.router.add_post("/api/auth/onboard", onboard)
    app.router.add_get("/api/auth/user", me)
    app.router.add_get("/api/users/{user_id}", public_user)


# -- OpenAPI ---------------------------------------------------------------------------------

SESSION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["user", "csrf_token"],
    "properties": {
        "user": PRIVATE_USER_SCHEMA,
        "csrf_token": {
            "type": ["string", "null"],
            "description": "Send as X-CSRF-Token on state-changing calls made with the cookie.",
        },
    },
}
UNAUTHENTICATED = error_response("Not logged in")
CSRF = error_response("Cookie-authenticated call without a valid X-CSRF-Token")

OPENAPI_PATHS: dict[str, Any] = {
    "/api/auth/register": {
        "post": {
            "summary": "Create an account and log in (the first account becomes an admin)",
            "tags": ["auth"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["username", "email", "password"],
                    "properties": {
                        "username": {"type": "string", "pattern": "^[a-z0-9_]{3,32}$"},
                        "email": {"type": "string", "format": "email"},
                        "password": {"type": "string", "minLength": 8, "maxLength": 1024},
                    },
                }
            ),
            "responses": {
                "201": json_response("Registered; session cookie set", SESSION_SCHEMA),
                "400": error_response("Missing or invalid field"),
                "409": error_response(
                    "Username or email already taken (the answer does not say which)"
                ),
                "429": error_response("Too many sign-ups from this address (see Retry-After)"),
            },
        }
    },
    "/api/auth/login": {
        "post": {
            "summary": "Log in with username (or email) and password",
            "tags": ["auth"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["username", "password"],
                    "properties": {
                        "username": {"type": "string", "description": "username or email"},
                        "password": {"type": "string"},
                    },
                }
            ),
            "responses": {
                "200": json_response("Logged in; session cookie set", SESSION_SCHEMA),
                "400": error_response("Missing field"),
                "401": error_response("Wrong username or password"),
                "403": error_response("Account disabled"),
                "429": error_response(
                    "Too many failed logins from this address, "
                    "for this account or for all (see Retry-After)"
                ),
            },
        }
    },
    "/api/auth/logout": {
        "post": {
            "summary": "End the current session",
            "tags": ["auth"],
            "responses": {"204": {"description": "Logged out; cookie cleared"}, "403": CSRF},
        }
    },
    "/api/auth/onboard": {
        "post": {
            "summary": "Finish sign-up: username, display name, bio",
            "tags": ["auth"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {
                        "username": {"type": "string"},
                        "display_name": {"type": "string"},
                        "bio": {"type": "string"},
                    },
                }
            ),
            "responses": {
                "200": json_response("Onboarded", USER_ENVELOPE),
                "400": error_response("Invalid field"),
                "401": UNAUTHENTICATED,
                "403": CSRF,
                "409": error_response("Username taken"),
            },
        }
    },
    "/api/auth/user": {
        "get": {
            "summary": "The logged-in user (and the CSRF token for cookie clients)",
            "tags": ["auth"],
            "responses": {
                "200": json_response("The current user", SESSION_SCHEMA),
                "401": UNAUTHENTICATED,
            },
        }
    },
    "/api/users/{user_id}": {
        "get": {
            "summary": "A user's public profile (email only for the user themselves or an admin)",
            "tags": ["users"],
            "parameters": [
                {"name": "user_id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "responses": {
                "200": json_response(
                    "The user",
                    {
                        "type": "object",
                        "required": ["user"],
                        "properties": {"user": PUBLIC_USER_SCHEMA},
                    },
                ),
                "404": error_response("No such user"),
            },
        }
    },
}
