"""Blocks through the JSON API: a user ignores another in every chat (their messages are not
delivered to the blocker's sockets, in any process: ``ChatService.blocks_changed``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import chat as chat_store

from ..errors import ApiError
from ..identity import require_user
from ..keys import DB_KEY
from ..openapi import error_response
from ..parsing import path_id
from .api_context import DONE, UNAUTHENTICATED, USER_ID_PARAM, chat_service, json_reply


async def block_user(request: web.Request) -> web.Response:
    user = await require_user(request)
    target = path_id(request, "user_id", "user")
    async with request.app[DB_KEY].session() as session:
        added = await chat_store.block(session, user.id, target)
        await session.commit()
    chat_service(request).blocks_changed(user.id)
    return json_reply({"user_id": target, "blocked": True}, status=201 if added else 200)


async def unblock_user(request: web.Request) -> web.Response:
    user = await require_user(request)
    target = path_id(request, "user_id", "user")
    async with request.app[DB_KEY].session() as session:
        removed = await chat_store.unblock(session, user.id, target)
        await session.commit()
    if not removed:
        raise ApiError(404, "not_found", f"you have not blocked user {target}")
    chat_service(request).blocks_changed(user.id)
    return json_reply({"user_id": target, "blocked": False})


async def list_blocks(request: web.Request) -> web.Response:
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        ids = await chat_store.blocked_ids(session, user.id)
        users = await chat_store.user_public(session, sorted(ids))
    return json_reply({"blocked": [users[i] for i in sorted(users)]})


# -- OpenAPI ---------------------------------------------------------------------------------

OPENAPI_PATHS: dict[str, Any] = {
    "/api/blocks": {
        "get": {
            "summary": "Users you blocked",
            "tags": ["chat"],
            "responses": {"200": DONE, "401": UNAUTHENTICATED},
        }
    },
    "/api/users/{user_id}/block": {
        "post": {
            "summary": "Block (ignore) a user: their messages are not delivered to you",
            "tags": ["chat"],
            "parameters": [USER_ID_PARAM],
            "responses": {
                "201": DONE,
                "200": DONE,
                "400": error_response("Yourself"),
                "401": UNAUTHENTICATED,
                "404": error_response("No such user"),
            },
        },
        "delete": {
            "summary": "Unblock a user",
            "tags": ["chat"],
            "parameters": [USER_ID_PARAM],
            "responses": {
                "200": DONE,
                "401": UNAUTHENTICATED,
                "404": error_response("Not blocked"),
            },
        },
    },
}
