"""Following channels: the Follow button's API and the list of channels a user follows.

Routes: ``GET/POST/DELETE /api/channels/{slug}/follow`` and ``GET /api/auth/following``.
Following is idempotent both ways (a second click, or a retry after a lost response, changes
nothing) and every answer carries the exact follower count, so the page never has to guess.
Owners may follow their own channel: it is harmless, it is what other platforms allow, and
refusing it would make the button behave differently on one page for no gain to anyone.

Writes need a login (cookie with the CSRF header, checked by the identity middleware, or a
bearer token). After the commit the chat service is told, so a followers-only room lets the
new follower speak (or stops an unfollower) at once, in this process and, through the chat
bus, in every other one.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import follows

from .documents import load_channel
from .identity import current_user, require_user
from .keys import CHAT_KEY, DB_KEY, FOLLOW_LISTENERS_KEY, FollowChange
from .openapi import SLUG_PARAM


def _state(following: bool, followers: int) -> web.Response:
    return web.json_response(
        {"following": following, "followers": followers}, headers={"Cache-Control": "no-store"}
    )


async def follow_state(request: web.Request) -> web.Response:
    """Whether the caller follows the channel (false when anonymous) and its follower count."""
    user = await current_user(request)
    async with request.app[DB_KEY].session() as session:
        channel, _ = await load_channel(request, session)
        following = user is not None and await follows.is_following(session, user.id, channel.id)
        return _state(following, channel.follower_count)


async def _change(request: web.Request, following: bool) -> web.Response:
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        channel, _ = await load_channel(request, session)
        change = follows.follow if following else follows.unfollow
        state = await change(session, user.id, channel.id)
        await session.commit()
    chat = request.app.get(CHAT_KEY)
    if chat is not None:
        chat.follow_changed(channel.id, user.id, following)
    told = FollowChange(channel.id, user.id, following, state.changed)
    for listener in request.app.get(FOLLOW_LISTENERS_KEY, ()):
        listener(told)
    return _state(state.following, state.followers)


async def follow_channel(request: web.Request) -> web.Response:
    return await _change(request, True)


async def unfollow_channel(request: web.Request) -> web.Response:
    return await _change(request, False)


async def following_list(request: web.Request) -> web.Response:
    """The caller's followed channels, live ones first."""
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        rows = await follows.followed_channels(session, user.id)
    return web.json_response(
        {
            "channels": [
                {
                    "id": row.id,
                    "slug": row.slug,
                    "name": row.name,
                    "live": row.live,
                    "url": f"/streams/{row.slug}",
                    "followed_at": row.followed_at.isoformat(),
                }
                for row in rows
            ]
        },
        headers={"Cache-Control": "no-store"},
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/api/channels/{slug}/follow", follow_state)
    app.router.add_post("/api/channels/{slug}/follow", follow_channel)
    app.router.add_delete("/api/channels/{slug}/follow", unfollow_channel)
    app.router.add_get("/api/auth/following", following_list)


# -- OpenAPI -------------------------------------------------------------------------------

_FOLLOW_STATE = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["following", "followers"],
            "properties": {
                "following": {
                    "type": "boolean",
                    "description": "Whether the caller follows the channel "
                    "(false when not logged in).",
                },
                "followers": {"type": "integer", "minimum": 0},
            },
        }
    }
}
_WRITE_ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthenticated"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "404": {"$ref": "#/components/responses/NotFound"},
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/channels/{slug}/follow": {
        "parameters": [SLUG_PARAM],
        "get": {
            "summary": "Whether you follow the channel, and its follower count",
            "tags": ["follows"],
            "responses": {
                "200": {"description": "Follow state", "content": _FOLLOW_STATE},
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        },
        "post": {
            "summary": "Follow the channel (idempotent; owners may follow their own)",
            "tags": ["follows"],
            "responses": {
                "200": {"description": "Following", "content": _FOLLOW_STATE},
                **_WRITE_ERRORS,
            },
        },
        "delete": {
            "summary": "Stop following the channel (idempotent)",
            "tags": ["follows"],
            "responses": {
                "200": {"description": "Not following", "content": _FOLLOW_STATE},
                **_WRITE_ERRORS,
            },
        },
    },
    "/api/auth/following": {
        "get": {
            "summary": "The channels you follow, live ones first",
            "tags": ["follows"],
            "responses": {
                "200": {
                    "description": "Followed channels",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "channels": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": [
                                                "id",
                                                "slug",
                                                "name",
                                                "live",
                                                "url",
                                                "followed_at",
                                            ],
                                            "properties": {
                                                "id": {"type": "integer"},
                                                "slug": {"type": "string"},
                                                "name": {"type": "string"},
                                                "live": {"type": "boolean"},
                                                "url": {"type": "string"},
                                                "followed_at": {
                                                    "type": "string",
                                                    "format": "date-time",
                                                },
                                            },
                                        },
                                    }
                                },
                            }
                        }
                    },
                },
                "401": {"$ref": "#/components/responses/Unauthenticated"},
            },
        },
    },
}
