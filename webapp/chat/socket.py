"""``/ws/chat/{slug}``: read a room (anyone) and write in it (logged-in users).

Client frames are JSON objects with a ``type``:

* ``chat:send`` ``{"content"}`` — post a message.
* ``chat:delete`` ``{"id"}``, ``chat:timeout`` ``{"user_id", "seconds"}``, ``chat:ban``
  ``{"user_id", "reason"?}``, ``chat:unban`` ``{"user_id"}`` — moderation (owner, moderators,
  admins).

* other ``area:verb`` types added by other modules (``ChatService.register_frame``), each
  checking its own permissions.

Anything else (not JSON, not an object, unknown type, binary) gets a ``chat:error`` and the
socket stays open; a frame over ``chat.max_message_bytes`` closes it with 1009 (aiohttp's
limit). Every frame, of any type, counts against the socket's frame budget (budget.py): past
``chat.frame_budget`` per ``chat.frame_window`` seconds the client gets a ``chat:error``
(``frame_budget``) and its frames are ignored until the window ends; twice the budget in one
window closes the socket with 1008.

Identity comes from the upgrade request (session cookie or ``Authorization: Bearer``); a cookie
is only trusted when the request's Origin is this site, so another site's page cannot chat in
a visitor's name through their cookie (it can still read, like anyone). It is kept as a
``Principal`` that follows the account while the socket is open (principal.py): a disabled
account, a logout or a revoked token ends the socket (chat:error, then close 1008), a demotion
takes effect on the next frame. Permissions are checked when a frame uses them, from memory
first, so a refused frame costs no database query.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from storage import chat as chat_store
from storage.models import User
from storage.queries import sha256_hex
from webapp.identity import bearer_token, current_user, session_cookie
from webapp.keys import CHAT_KEY
from webapp.parsing import BadJson, parse_json

from .budget import FrameBudget, Verdict
from .content import ChatError
from .frames import events_frame
from .moderation import can_moderate
from .principal import SESSION, TOKEN, Principal
from .room import Client, Room
from .service import ChatService
from .typing import role_of

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008


def public_user(user: User) -> dict[str, Any]:
    profile = user.profile
    name = profile.display_name if profile is not None and profile.display_name.strip() else ""
    return {"id": user.id, "username": user.username, "display_name": name or user.username}


def same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser page (browsers always send Origin on WebSocket upgrades)
    return urlsplit(origin).netloc.lower() == request.host.lower()


async def socket_user(request: web.Request) -> User | None:
    if bearer_token(request) is None and not same_origin(request):
        return None
    return await current_user(request)


def principal_for(request: web.Request, user: User) -> Principal:
    """``user`` as this socket will act, with the credential that authenticated it (the same
    choice ``current_user`` made: the bearer token if one was sent, else the session cookie)."""
    token = bearer_token(request)
    kind, secret = (TOKEN, token) if token is not None else (SESSION, session_cookie(request))
    return Principal(
        user.id, user.username, user.is_admin, kind, sha256_hex(secret or ""), time.monotonic()
    )


async def chat_socket(request: web.Request) -> web.StreamResponse:
    service: ChatService = request.app[CHAT_KEY]
    cs = service.cs
    slug = request.match_info["slug"]
    state = await service.state(slug)
    if state is None:
        raise web.HTTPNotFound(text=f"no channel {slug!r}")
    epoch = service.account_epoch
    user = await socket_user(request)
    ws = web.WebSocketResponse(
        heartbeat=cs.heartbeat or None,
        max_msg_size=cs.max_message_bytes,
        compress=False,
        autoping=True,
    )
    await ws.prepare(request)
    if state.logged_in_only and user is None:
        await ws.send_str(
            json.dumps(
                [
                    {
                        "type": "chat:error",
                        "code": "login_required",
                        "message": "this chat is for logged-in users: log in to read and write",
                    }
                ]
            )
        )
        await ws.close(code=CLOSE_POLICY, message=b"login required")
        return ws
    public = public_user(user) if user is not None else None
    if public is not None:  # the viewer list's group (issue 16): owner, moderator, follower...
        public["role"] = await role_of(service, state, public["id"])
    # No query per join past this point: blocked ids are loaded once per user, the history
    # and stream status come from memory (see service.history / stream_events).
    blocked: set[int] = set()
    if user is not None:
        blocked = await service.blocked_for(user.id)
    principal = principal_for(request, user) if user is not None else None
    client = Client(ws, request.transport, user.id if user else None, public, blocked, principal)
    room = service.join(slug, client)
    service.metrics.sockets.inc()
    try:
        if service.counts is not None:  # a cluster node: who is in it on the other nodes
            await service.sync_presence(room)
        history = await service.history(state, blocked)
        me = None
        if user is not None and public is not None:  # both or neither: public is user's face
            me = {
                **public,
                "can_moderate": can_moderate(state, user),
                "is_owner": user.id == state.owner_id,
            }
        first = [
            {
                "type": "chat:history",
                "messages": history,
                "users": room.viewer_list(),
                "me": me,
                "settings": chat_store.chat_settings_dict(state),
                "max_length": cs.max_length,
            }
        ]
        first += service.stream_events(state)
        for hook in service.join_hooks:
            first += await hook(service, state, client)
        if not client.release(events_frame(first), cs.send_queue_bytes):
            room.drop(client)
            return ws
        if service.account_epoch != epoch:
            # An account changed between our login lookup and now: the bus's re-check may
            # have missed this socket, so check it (it is closed if it may no longer act).
            await service.recheck([client])
        if public is not None and public["id"] not in room.announced:
            room.announced.add(public["id"])  # this process reports the user once
            await service.presence(slug, public, joined=True)
        await _read(service, room, client)
    finally:
        service.metrics.sockets.dec()
        if user is not None:
            service.release_blocked(user.id)
        last = room.remove(client)
        if public is not None and last and public["id"] in room.announced:
            room.announced.discard(public["id"])
            await service.presence(slug, public, joined=False)
        if not ws.closed:
            await ws.close()
    return ws


async def _read(service: ChatService, room: Room, client: Client) -> None:
    ws = client.ws
    cs = service.cs
    budget = FrameBudget(cs.frame_budget, cs.frame_window)
    while True:
        try:
            msg = await ws.receive(timeout=cs.idle_timeout or None)
        except TimeoutError:
            await ws.close(code=1000, message=b"idle timeout")
            return
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return  # CLOSE, CLOSING, CLOSED, ERROR (e.g. 1009 for an oversized frame)
        if client.closed:
            continue  # being closed (dropped or ended): its close message comes next
        now = time.monotonic()
        verdict = budget.take(now)
        if verdict is Verdict.OK:
            if msg.type == WSMsgType.TEXT:
                reply = await handle_frame(service, room.slug, client, msg.data)
            else:
                reply = ChatError(
                    "bad_frame", "binary frames are not accepted; send JSON text"
                ).event()
        elif verdict is Verdict.WARN:
            wait = budget.retry_after(now)
            reply = ChatError(
                "frame_budget",
                f"too many frames (at most {budget.frames} in "
                f"{budget.window:g} s): frames are ignored for {wait:.0f} more "
                "seconds",
                status=429,
                retry_after=wait,
            ).event()
        elif verdict is Verdict.CLOSE:
            service.end_socket(client, "frame_budget", "too many frames: connection closed")
            continue
        else:
            continue
        if reply is not None and not client.closed:
            if not client.send_events([reply], cs.send_queue_bytes):
                room.drop(client)
                return


async def handle_frame(
    service: ChatService, slug: str, client: Client, data: str
) -> dict[str, Any] | None:
    """Act on one client frame; an event for the sender only (an error), or None.

    What a frame needs is checked from memory before anything is read from the database
    (the channel's cached state, the principal as last checked); only a frame that passes is
    worth re-checking a stale principal for, and then acting on."""
    try:
        frame = parse_json(data, service.settings.http.max_json_depth)
    except BadJson as exc:
        return ChatError("bad_frame", f"bad frame: {exc}").event()
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return ChatError("bad_frame", 'frames must be JSON objects with a "type"').event()
    kind = frame["type"]
    extra = service.frame_handlers.get(kind)
    if kind not in HANDLED and extra is None:
        return ChatError("unknown_type", f"unknown frame type {kind[:40]!r}").event()
    public = client.user
    if client.principal is None or public is None:
        return ChatError("login_required", "log in to chat").event()
    state = await service.state(slug)
    if state is None:
        return ChatError("not_found", "this channel no longer exists").event()
    try:
        if extra is not None:
            actor = await service.current(client)
            if actor is None:
                return None
            return await extra(service, state, client, actor, frame)
        if kind != "chat:send":
            service.require_moderator(state, client.principal)  # from memory: no query
        actor = await service.current(client)
        if actor is None:
            return None  # it may no longer act: end_socket told it and is closing it
        if kind == "chat:send":
            await service.send(state, actor, public, frame.get("content"))
        elif kind == "chat:delete":
            await service.delete_message(actor, frame.get("id"), state)
        elif kind == "chat:timeout":
            await service.timeout(state, actor, frame.get("user_id"), frame.get("seconds"))
        elif kind == "chat:ban":
            await service.ban(state, actor, frame.get("user_id"), frame.get("reason", ""))
        elif kind == "chat:unban":
            await service.unban(state, actor, frame.get("user_id"))
    except ChatError as err:
        return err.event()
    except Exception:
        log.exception("chat: %s frame failed", kind)
        return ChatError("internal", "something went wrong; try again").event()
    return None


HANDLED = frozenset({"chat:send", "chat:delete", "chat:timeout", "chat:ban", "chat:unban"})
