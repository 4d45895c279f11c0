"""What every handler of chat's JSON API starts from, and the pieces their OpenAPI fragments
share.

A handler finds the process's ``ChatService`` and the channel's cached chat state (the same
copy the sockets check, so the API and the socket can never disagree on a permission), and
answers JSON that no cache may keep: history pages, moderation lists and reports change with
every message and every moderation act.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage.chat import ChannelChatState

from ..errors import ApiError
from ..keys import CHAT_KEY
from ..openapi import error_response, json_response
from .service import ChatService

NO_STORE = {"Cache-Control": "no-store"}


def chat_service(request: web.Request) -> ChatService:
    return request.app[CHAT_KEY]


async def channel_state(request: web.Request, slug: str | None = None) -> ChannelChatState:
    """The chat state of ``slug`` (by default the route's ``{slug}``); 404 for no channel."""
    slug = slug if slug is not None else request.match_info["slug"]
    state = await chat_service(request).state(slug)
    if state is None:
        raise ApiError(404, "not_found", f"no channel {slug!r}")
    return state


def json_reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=NO_STORE)


# -- OpenAPI pieces --------------------------------------------------------------------------

USER_ID_PARAM: dict[str, Any] = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer"},
}
UNAUTHENTICATED = error_response("Not logged in")
NOT_MODERATOR = error_response("Not the owner, a moderator or an admin of this channel")
DONE = json_response("Done", {"type": "object"})
