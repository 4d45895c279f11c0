"""The community pages: ``/streams/{slug}/community`` (the first topic, or an empty list),
``/streams/{slug}/community/{topic}`` (one topic: the topic list with unread counts, its
history and the message box) and the owner's ``/dashboard/channels/{slug}/community``.

The pages carry the list and who is reading; ``community.js`` pages the history from the API,
posts, marks the topic read, and takes new messages from the channel's chat socket.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from storage import chat as chat_store
from storage import community as store

from ..errors import ApiError
from ..identity import can_manage, require_manager, require_page_user
from ..keys import DB_KEY, SETTINGS_KEY
from ..render import redirect, render
from .api import topic_name, topics_with_unread
from .service import Place, can_moderate, readable


async def _readable_page(request: web.Request) -> Place:
    try:
        return await readable(request)
    except ApiError as err:
        if err.status == 401:  # a logged-in-only chat: log in, then come back
            raise web.HTTPSeeOther(f"/auth/login?next={quote(request.path_qs, safe='')}") from None
        raise


async def community_home(request: web.Request) -> web.Response:
    place = await _readable_page(request)
    async with request.app[DB_KEY].session() as session:
        topics = await store.list_topics(session, place.channel.id)
    if topics:
        return redirect(f"/streams/{place.channel.slug}/community/{topics[0].name}")
    return await _page(request, place, None)


async def topic_page(request: web.Request) -> web.Response:
    place = await _readable_page(request)
    name = topic_name(request)
    return await _page(request, place, name)


async def _page(request: web.Request, place: Place, name: str | None) -> web.Response:
    topics = await topics_with_unread(request, place)
    current = next((t for t in topics if t["name"] == name), None)
    if name is not None and current is None:
        raise ApiError(404, "not_found", f"no topic #{name} in this channel")
    blocked: list[int] = []
    if place.user is not None:
        async with request.app[DB_KEY].session() as session:
            blocked = sorted(await chat_store.blocked_ids(session, place.user.id))
    settings = request.app[SETTINGS_KEY]
    response = render(
        request,
        "community/page.html",
        {
            "channel": place.channel,
            "topics": topics,
            "topic": current,
            "me": place.user,
            "can_moderate": can_moderate(place.state, place.user),
            "can_manage": place.user is not None and can_manage(place.user, place.channel),
            "blocked": blocked,
            "max_length": settings.chat.max_length,
            "page_size": settings.community.page_size,
            "unread_cap": settings.community.unread_cap,
            "listed": place.channel.is_public,
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def manage_page(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    place = await readable(request)
    require_manager(user, place.channel)
    async with request.app[DB_KEY].session() as session:
        topics = await store.list_topics(session, place.channel.id)
    response = render(
        request,
        "community/manage.html",
        {
            "channel": place.channel,
            "topics": topics,
            "max_topics": request.app[SETTINGS_KEY].community.max_topics,
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/streams/{slug}/community", community_home)
    app.router.add_get("/streams/{slug}/community/{topic}", topic_page)
    app.router.add_get("/dashboard/channels/{slug}/community", manage_page)
