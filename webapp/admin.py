"""User administration: list users, promote/demote admins, disable/enable accounts.

``/dashboard/admin/users`` (forms) and ``/api/admin/users`` (JSON), admins only. Disabling a
user deletes their sessions at once; their API tokens are refused while the account is
disabled. The server never lets the last enabled admin be demoted or disabled, so there is
always someone who can undo a mistake.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import accounts

from .errors import ApiError
from .identity import (
    account_changed,
    require_admin,
    require_page_user,
    require_user,
    user_json,
)
from .keys import DB_KEY
from .openapi import PRIVATE_USER_SCHEMA, error_response, json_body, json_response
from .parsing import path_id, query_int, read_form, read_json
from .render import form_text, redirect, render

# Users per page of the list (a display cap; the API takes ?limit= up to MAX_PAGE).
PAGE_SIZE = 50
MAX_PAGE = 200
MAX_OFFSET = 10**12
ACTIONS = {
    "promote": {"is_admin": True},
    "demote": {"is_admin": False},
    "disable": {"is_disabled": True},
    "enable": {"is_disabled": False},
}

PAGE_ERRORS = {
    "last_admin": "That would leave no enabled administrator; promote someone else first."
}


async def change_user(app: web.Application, user_id: int, changes: dict[str, bool]) -> Any:
    """Apply flag changes, refusing any that would leave no enabled admin."""
    async with app[DB_KEY].session() as session:
        target = await accounts.set_user_flags(session, user_id, **changes)
        if await accounts.count_admins(session) == 0:
            await session.rollback()
            raise ApiError(
                409,
                "last_admin",
                "this would leave no enabled administrator; promote someone else first",
            )
        await session.commit()
        account_changed(app, user_id)  # open chat sockets follow the new flags at once
        return await accounts.get_user_with_profile(session, target.id)


async def list_users_api(request: web.Request) -> web.Response:
    require_admin(await require_user(request))
    limit = query_int(request, "limit", PAGE_SIZE, maximum=MAX_PAGE)
    offset = query_int(request, "offset", 0, maximum=MAX_OFFSET)
    async with request.app[DB_KEY].session() as session:
        users = await accounts.list_users(session, limit=limit, offset=offset)
    return web.json_response(
        {"users": [user_json(u, private=True) for u in users]},
        headers={"Cache-Control": "no-store"},
    )


async def patch_user_api(request: web.Request) -> web.Response:
    require_admin(await require_user(request))
    user_id = path_id(request, "user_id", "user")
    body = await read_json(request)
    unknown = sorted(set(body) - {"is_admin", "is_disabled"})
    if unknown:
        raise ApiError(400, "invalid", f"unknown field(s): {', '.join(unknown)}")
    if not body:
        raise ApiError(400, "missing_field", "send is_admin and/or is_disabled")
    for name, value in body.items():
        if not isinstance(value, bool):
            raise ApiError(400, "invalid", f"the field {name!r} must be a boolean")
    user = await change_user(request.app, user_id, body)
    return web.json_response({"user": user_json(user, private=True)})


async def users_page(request: web.Request) -> web.Response:
    me = await require_page_user(request)
    require_admin(me)
    offset = query_int(request, "offset", 0, maximum=MAX_OFFSET)
    async with request.app[DB_KEY].session() as session:
        users = await accounts.list_users(session, limit=PAGE_SIZE + 1, offset=offset)
    return render(
        request,
        "admin_users.html",
        {
            "users": users[:PAGE_SIZE],
            "me": me,
            "offset": offset,
            "next_offset": offset + PAGE_SIZE if len(users) > PAGE_SIZE else None,
            "prev_offset": max(0, offset - PAGE_SIZE) if offset else None,
            "error": PAGE_ERRORS.get(request.query.get("error", "")),
            "page_size": PAGE_SIZE,
        },
    )


async def user_action_submit(request: web.Request) -> web.Response:
    me = await require_page_user(request)
    require_admin(me)
    user_id = path_id(request, "user_id", "user")
    form = await read_form(request)
    action = form_text(form, "action")
    if action not in ACTIONS:
        raise ApiError(400, "invalid", f"unknown action {action!r}")
    try:
        await change_user(request.app, user_id, ACTIONS[action])
    except ApiError as exc:
        if exc.code != "last_admin":
            raise
        return redirect("/dashboard/admin/users?error=last_admin")
    return redirect("/dashboard/admin/users")


def setup(app: web.Application) -> None:
    app.router.add_get("/api/admin/users", list_users_api)
    app.router.add_patch("/api/admin/users/{user_id}", patch_user_api)
    app.router.add_get("/dashboard/admin/users", users_page)
    app.router.add_post("/dashboard/admin/users/{user_id}", user_action_submit)


_FORBIDDEN = error_response("Not an administrator")
OPENAPI_PATHS: dict[str, Any] = {
    "/api/admin/users": {
        "get": {
            "summary": "All users, oldest first (admins only)",
            "tags": ["admin"],
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_PAGE,
                        "default": PAGE_SIZE,
                    },
                },
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
            ],
            "responses": {
                "200": json_response(
                    "Users",
                    {
                        "type": "object",
                        "required": ["users"],
                        "properties": {"users": {"type": "array", "items": PRIVATE_USER_SCHEMA}},
                    },
                ),
                "400": error_response("Bad limit or offset"),
                "401": error_response("Not logged in"),
                "403": _FORBIDDEN,
            },
        }
    },
    "/api/admin/users/{user_id}": {
        "patch": {
            "summary": "Promote/demote an admin, disable/enable an account (admins only)",
            "tags": ["admin"],
            "parameters": [
                {"name": "user_id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "requestBody": json_body(
                {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": False,
                    "properties": {
                        "is_admin": {"type": "boolean"},
                        "is_disabled": {"type": "boolean"},
                    },
                }
            ),
            "responses": {
                "200": json_response(
                    "Changed",
                    {
                        "type": "object",
                        "required": ["user"],
                        "properties": {"user": PRIVATE_USER_SCHEMA},
                    },
                ),
                "400": error_response("Invalid body"),
                "401": error_response("Not logged in"),
                "403": _FORBIDDEN,
                "404": error_response("No such user"),
                "409": error_response("Would leave no enabled administrator"),
            },
        }
    },
}
