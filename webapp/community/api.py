"""The community channels' JSON API, each handler beside its OpenAPI fragment.

Reading follows the channel's chat rules (``service.readable``): anyone for an open chat, the
logged-in for a logged-in-only one, unlisted channels by their slug. Topics are managed by the
channel's owner or an admin (``require_manager``). A refused post answers with the ``code`` the
live chat would give (``banned``, ``timed_out``, ``rate_limited``, ``filtered``...).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import chat as chat_store
from storage import community as store
from storage.community_models import KINDS, NAME_MAX, CommunityTopic
from storage.errors import ValidationError

from ..errors import ApiError
from ..identity import can_manage, require_manager, require_user
from ..keys import DB_KEY, SETTINGS_KEY
from ..openapi import error_response, json_body, json_response
from ..parsing import field, path_id, query_int, read_json
from .service import CommunitySender, Place, can_write, page_json, readable

NO_STORE = {"Cache-Control": "no-store"}
SENDER_KEY = web.AppKey("community_sender", CommunitySender)


def reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=NO_STORE)


def topic_name(request: web.Request) -> str:
    """The ``{topic}`` path parameter; a 404 for anything that cannot be a topic's name."""
    raw = request.match_info["topic"]
    try:
        return store.check_name(raw)
    except ValidationError:
        raise ApiError(404, "not_found", f"no topic {raw[:40]!r}") from None


async def find_topic(request: web.Request, place: Place) -> CommunityTopic:
    name = topic_name(request)
    async with request.app[DB_KEY].session() as session:
        topic = await store.get_topic(session, place.channel.id, name)
    if topic is None:
        raise ApiError(404, "not_found", f"no topic #{name} in this channel")
    return topic


def topic_json(place: Place, topic: CommunityTopic, unread: int | None) -> dict[str, Any]:
    return {
        "name": topic.name,
        "kind": topic.kind,
        "position": topic.position,
        "unread": unread,
        "can_write": can_write(place.state, topic, place.user),
    }


async def topics_with_unread(request: web.Request, place: Place) -> list[dict[str, Any]]:
    """The channel's topics with the reader's unread counts (None when nobody is logged in)."""
    cap = request.app[SETTINGS_KEY].community.unread_cap
    async with request.app[DB_KEY].session() as session:
        topics = await store.list_topics(session, place.channel.id)
        counts: dict[int, int] = {}
        if place.user is not None:
            blocked = await chat_store.blocked_ids(session, place.user.id)
            counts = await store.unread_counts(
                session, place.user.id, [t.id for t in topics], exclude_users=blocked, cap=cap
            )
    return [
        topic_json(place, t, counts.get(t.id, 0) if place.user is not None else None)
        for t in topics
    ]


# -- topics ---------------------------------------------------------------------------------


async def list_topics(request: web.Request) -> web.Response:
    place = await readable(request)
    settings = request.app[SETTINGS_KEY].community
    return reply(
        {
            "topics": await topics_with_unread(request, place),
            "can_manage": place.user is not None and can_manage(place.user, place.channel),
            "max_topics": settings.max_topics,
            "unread_cap": settings.unread_cap,
        }
    )


async def create_topic(request: web.Request) -> web.Response:
    user = await require_user(request)
    place = await readable(request)
    require_manager(user, place.channel)
    body = await read_json(request)
    name = field(body, "name", str)
    kind = field(body, "kind", str, required=False, default="text")
    async with request.app[DB_KEY].session() as session:
        topic = await store.create_topic(
            session,
            place.channel.id,
            name,
            kind,
            request.app[SETTINGS_KEY].community.max_topics,
        )
        await session.commit()
    return reply({"topic": topic_json(place, topic, 0)}, status=201)


async def edit_topic(request: web.Request) -> web.Response:
    user = await require_user(request)
    place = await readable(request)
    require_manager(user, place.channel)
    name = topic_name(request)
    body = await read_json(request)
    new_name = field(body, "name", str, required=False)
    kind = field(body, "kind", str, required=False)
    position = field(body, "position", int, required=False)
    if isinstance(position, bool) or (position is not None and not 0 <= position <= 1000):
        raise ApiError(400, "invalid", "position must be a whole number 0-1000")
    async with request.app[DB_KEY].session() as session:
        topic = await store.get_topic(session, place.channel.id, name)
        if topic is None:
            raise ApiError(404, "not_found", f"no topic #{name} in this channel")
        await store.edit_topic(session, topic, name=new_name, kind=kind, position=position)
        await session.commit()
    return reply({"topic": topic_json(place, topic, None)})


async def delete_topic(request: web.Request) -> web.Response:
    user = await require_user(request)
    place = await readable(request)
    require_manager(user, place.channel)
    name = topic_name(request)
    async with request.app[DB_KEY].session() as session:
        topic = await store.get_topic(session, place.channel.id, name)
        if topic is None:
            raise ApiError(404, "not_found", f"no topic #{name} in this channel")
        await store.delete_topic(session, topic)
        await session.commit()
    return reply({"deleted": name})


# -- messages -------------------------------------------------------------------------------


async def topic_messages(request: web.Request) -> web.Response:
    place = await readable(request)
    settings = request.app[SETTINGS_KEY].community
    limit = query_int(request, "limit", settings.page_size, minimum=1, maximum=settings.page_max)
    before = query_int(request, "before", minimum=1)
    topic = await find_topic(request, place)
    async with request.app[DB_KEY].session() as session:
        blocked = (
            await chat_store.blocked_ids(session, place.user.id) if place.user is not None else ()
        )
        rows = await store.page_messages(
            session, topic.id, before=before, limit=limit, exclude_users=blocked
        )
        messages = await page_json(place, topic, rows, session)
    next_before = rows[-1].id if len(rows) == limit else None
    return reply({"messages": messages, "next_before": next_before})


async def post_message(request: web.Request) -> web.Response:
    user = await require_user(request)
    place = await readable(request)
    topic = await find_topic(request, place)
    body = await read_json(request)
    event = await request.app[SENDER_KEY].send(place, topic, user, body.get("content"))
    return reply({"message": event}, status=201)


async def mark_read(request: web.Request) -> web.Response:
    user = await require_user(request)
    place = await readable(request)
    topic = await find_topic(request, place)
    body = await read_json(request)
    last_id = field(body, "last_id", int, required=False)
    if isinstance(last_id, bool) or (last_id is not None and last_id < 0):
        raise ApiError(400, "invalid", "last_id must be a message id (0 or more)")
    async with request.app[DB_KEY].session() as session:
        marker = await store.mark_read(session, user.id, topic.id, last_id)
        await session.commit()
    return reply({"topic": topic.name, "last_read_id": marker})


async def delete_message(request: web.Request) -> web.Response:
    user = await require_user(request)
    message_id = path_id(request, "message_id", "message")
    event = await request.app[SENDER_KEY].delete(user, message_id)
    return reply({"deleted": event["id"]})


def setup_routes(app: web.Application) -> None:
    app[SENDER_KEY] = CommunitySender(app)
    r = app.router
    base = "/api/channels/{slug}/community/topics"
    r.add_get(base, list_topics)
    r.add_post(base, create_topic)
    r.add_patch(base + "/{topic}", edit_topic)
    r.add_delete(base + "/{topic}", delete_topic)
    r.add_get(base + "/{topic}/messages", topic_messages)
    r.add_post(base + "/{topic}/messages", post_message)
    r.add_post(base + "/{topic}/read", mark_read)
    r.add_delete("/api/community/messages/{message_id}", delete_message)


# -- OpenAPI ---------------------------------------------------------------------------------

_SLUG = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
_TOPIC = {
    "name": "topic",
    "in": "path",
    "required": True,
    "description": "The topic's name, without '#'",
    "schema": {"type": "string", "maxLength": NAME_MAX},
}
_TOPIC_OBJ: dict[str, Any] = {
    "type": "object",
    "required": ["name", "kind", "position", "can_write"],
    "properties": {
        "name": {"type": "string"},
        "kind": {"enum": list(KINDS)},
        "position": {"type": "integer"},
        "unread": {"type": ["integer", "null"]},
        "can_write": {"type": "boolean"},
    },
}
_MESSAGE: dict[str, Any] = {
    "type": "object",
    "required": ["type", "topic", "id", "user", "content", "created_at"],
    "properties": {
        "type": {"const": "community:message"},
        "topic": {"type": "string"},
        "id": {"type": "integer"},
        "user": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "username": {"type": "string"},
                "display_name": {"type": "string"},
                "badges": {"type": "array", "items": {"enum": ["owner", "moderator", "admin"]}},
            },
        },
        "content": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
_UNAUTH = error_response("Not logged in (or the channel's chat is for logged-in users)")
_NOT_MANAGER = error_response("Not the channel's owner or an admin")
_NO_CHANNEL = error_response("No such channel")
_NO_TOPIC = error_response("No such channel or topic")
_REFUSED = error_response(
    "Refused: invalid or empty, banned, timed out, announcements (owner and moderators "
    "only), followers only, rate limited (Retry-After) or filtered"
)
_TOPIC_REPLY = json_response("The topic", {"type": "object", "properties": {"topic": _TOPIC_OBJ}})
_DONE = json_response("Done", {"type": "object"})

OPENAPI_PATHS: dict[str, Any] = {
    "/api/channels/{slug}/community/topics": {
        "parameters": [_SLUG],
        "get": {
            "summary": "A channel's community topics in order, with the reader's unread counts",
            "tags": ["community"],
            "responses": {
                "200": json_response(
                    "Topics",
                    {
                        "type": "object",
                        "properties": {
                            "topics": {"type": "array", "items": _TOPIC_OBJ},
                            "can_manage": {"type": "boolean"},
                            "max_topics": {"type": "integer"},
                            "unread_cap": {"type": "integer"},
                        },
                    },
                ),
                "401": _UNAUTH,
                "404": _NO_CHANNEL,
            },
        },
        "post": {
            "summary": "Open a topic (owner or admin); kind text or announcements",
            "tags": ["community"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "maxLength": NAME_MAX},
                        "kind": {"enum": list(KINDS)},
                    },
                }
            ),
            "responses": {
                "201": _TOPIC_REPLY,
                "400": error_response("Bad name or kind, or the channel has its most topics"),
                "401": _UNAUTH,
                "403": _NOT_MANAGER,
                "404": _NO_CHANNEL,
                "409": error_response("The channel already has a topic of that name"),
            },
        },
    },
    "/api/channels/{slug}/community/topics/{topic}": {
        "parameters": [_SLUG, _TOPIC],
        "patch": {
            "summary": "Rename, change the kind of, or move a topic (owner or admin)",
            "tags": ["community"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "maxLength": NAME_MAX},
                        "kind": {"enum": list(KINDS)},
                        "position": {"type": "integer", "minimum": 0, "maximum": 1000},
                    },
                }
            ),
            "responses": {
                "200": _TOPIC_REPLY,
                "400": error_response("Bad name, kind or position"),
                "401": _UNAUTH,
                "403": _NOT_MANAGER,
                "404": _NO_TOPIC,
                "409": error_response("The channel already has a topic of that name"),
            },
        },
        "delete": {
            "summary": "Delete a topic with its messages (owner or admin)",
            "tags": ["community"],
            "responses": {
                "200": _DONE,
                "401": _UNAUTH,
                "403": _NOT_MANAGER,
                "404": _NO_TOPIC,
            },
        },
    },
    "/api/channels/{slug}/community/topics/{topic}/messages": {
        "parameters": [_SLUG, _TOPIC],
        "get": {
            "summary": "A page of a topic's messages, newest first; pass next_before as before",
            "tags": ["community"],
            "parameters": [
                {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                },
            ],
            "responses": {
                "200": json_response(
                    "Messages",
                    {
                        "type": "object",
                        "properties": {
                            "messages": {"type": "array", "items": _MESSAGE},
                            "next_before": {"type": ["integer", "null"]},
                        },
                    },
                ),
                "401": _UNAUTH,
                "404": _NO_TOPIC,
            },
        },
        "post": {
            "summary": "Post in a topic (the live chat's checks), then deliver it to open pages",
            "tags": ["community"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["content"],
                    "properties": {"content": {"type": "string", "maxLength": 500}},
                }
            ),
            "responses": {
                "201": json_response(
                    "Stored and delivered",
                    {"type": "object", "properties": {"message": _MESSAGE}},
                ),
                "400": _REFUSED,
                "401": _UNAUTH,
                "403": _REFUSED,
                "404": _NO_TOPIC,
                "429": _REFUSED,
            },
        },
    },
    "/api/channels/{slug}/community/topics/{topic}/read": {
        "parameters": [_SLUG, _TOPIC],
        "post": {
            "summary": "Mark a topic read up to last_id (default: its newest message)",
            "tags": ["community"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {"last_id": {"type": "integer", "minimum": 0}},
                }
            ),
            "responses": {
                "200": json_response(
                    "The marker stored",
                    {
                        "type": "object",
                        "properties": {
                            "topic": {"type": "string"},
                            "last_read_id": {"type": "integer"},
                        },
                    },
                ),
                "401": _UNAUTH,
                "404": _NO_TOPIC,
            },
        },
    },
    "/api/community/messages/{message_id}": {
        "delete": {
            "summary": "Soft-delete a community message (owner, moderators, admins, its author)",
            "tags": ["community"],
            "parameters": [
                {
                    "name": "message_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer"},
                }
            ],
            "responses": {
                "200": _DONE,
                "401": _UNAUTH,
                "403": error_response("Not a moderator of the channel nor the author"),
                "404": error_response("No such message"),
            },
        }
    },
}
