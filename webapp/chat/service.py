"""The chat of one server process: rooms, the send path, and the caches they read from.

The message writer (group commit) is in writer.py, moderation (deletes, timeouts, bans) in
moderation.py, the readers' block lists in blocks.py, the follower cache of followers-only chat
in followers.py and the re-checks of the accounts behind open sockets in accounts.py;
``ChatService`` is the one face the socket, the API and the other areas use.

Order of a message: checks (content, ban, timeout, followers-only, slow mode, rate limit, word
filter) -> the writer commits it (group commit: everything that arrived during the previous
commit goes in one transaction) -> only then it is published on the bus -> every process's
room puts it in its next tick. If the commit fails the sender gets ``chat:error`` and the
message is never published, so nobody sees a message that is not in the history.

Moderation state (moderators, bans, timeouts, chat settings) is cached per channel in memory;
every change reloads it here and publishes an internal ``_state`` event so the other processes
drop their copy too. Internal events (type starting with ``_``) never reach a socket.

Account changes (disable, promote/demote, logout, token revocation) are published as
``_account`` events: every process re-reads the account and credential behind that user's open
sockets and updates their principals in place, or ends the sockets (see principal.py). Every
permission is checked when it is used, from memory first, so a refused frame costs no query.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from mediaserver.live import LiveRegistry
from mediaserver.live.stream import LiveStream
from mediaserver.settings import Settings
from storage import Database, queries
from storage import channels as channel_queries
from storage import chat as chat_store
from storage.chat import ChannelChatState, NewMessage, StoredMessage

from .accounts import SocketAccounts
from .blocks import BlockLists
from .bus import ChatBus, make_bus
from .content import ChatError, RateLimiter, apply_filter, clean_content
from .followers import Followers
from .frames import iso_time as _iso
from .metrics import chat_metrics
from .moderation import Actor, ChatModeration, badges, can_moderate, require_moderator
from .principal import Principal
from .recent import RecentMessages
from .room import Client, Room
from .writer import MessageWriter

log = logging.getLogger(__name__)

# Bus topic for per-user (not per-room) news; "_" cannot start a channel slug.
BLOCKS_TOPIC = "_users"


class ChatService:
    def __init__(
        self, settings: Settings, db: Database, registry: LiveRegistry, metrics: Any = None
    ) -> None:
        self.settings = settings
        self.cs = settings.chat
        self.db = db
        self.registry = registry
        self.bus: ChatBus = make_bus(self.cs.bus)
        self.writer = MessageWriter(db)
        self.rooms: dict[str, Room] = {}
        # Recent messages per room with sockets here (see recent.py); dropped with the room.
        self.recent: dict[str, RecentMessages] = {}
        self._states: dict[str, ChannelChatState] = {}
        self._state_locks: dict[str, asyncio.Lock] = {}
        # Bumped by every _state event, so a state load that raced a change is not cached.
        self._state_epoch = 0
        # Bumped by every _account event, so a socket that opened during one re-checks.
        self.account_epoch = 0
        self.followers = Followers(db)  # for followers-only chat
        self._slow: dict[tuple[int, int], float] = {}
        self.limiter = RateLimiter(
            self.cs.rate_limit_messages, self.cs.rate_limit_window, self.cs.mute_seconds
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self.blocks = BlockLists(db, self._spawn)
        self.moderation = ChatModeration(self)
        self._viewer_task: asyncio.Task[None] | None = None
        self.dropped = 0  # sockets disconnected for overflowing their send queue
        self.metrics = chat_metrics(getattr(metrics, "registry", None))
        self.accounts = SocketAccounts(db, self.cs, self.metrics, self._spawn)
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        await self.bus.start(self._deliver)
        self.writer.start()
        self.registry.on_started(self._stream_started)
        self.registry.on_ended(self._stream_ended)
        self._viewer_task = asyncio.get_running_loop().create_task(self._viewer_loop())

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._viewer_task is not None:
            self._viewer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._viewer_task
        for room in list(self.rooms.values()):
            for client in list(room.clients):
                room.remove(client)
                with contextlib.suppress(Exception):
                    await client.ws.close(code=1001, message=b"server shutting down")
            await room.stop()
        await self.writer.stop()
        await self.bus.close()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- channel state --------------------------------------------------------------------
    async def state(self, slug: str) -> ChannelChatState | None:
        """The channel's cached chat state; None for an unknown channel."""
        state = self._states.get(slug)
        if state is not None:
            return state
        if not queries.SLUG_RE.fullmatch(slug):
            return None
        lock = self._state_locks.setdefault(slug, asyncio.Lock())
        async with lock:
            state = self._states.get(slug)
            if state is not None:
                return state
            while True:
                epoch = self._state_epoch
                async with self.db.session() as session:
                    channel = await queries.get_channel_by_slug(session, slug)
                    if channel is None:
                        return None
                    state = await chat_store.load_chat_state(session, channel, datetime.now(UTC))
                    live = await queries.live_stream_for_channel(session, channel.id)
                if live is not None:
                    state.stream_id, state.stream_title = live.id, live.title
                    state.viewers = live.viewer_count
                if self._state_epoch == epoch:
                    break  # no change was announced while we read: this copy is current
            self._states[slug] = state
            return state

    async def changed(self, slug: str) -> ChannelChatState | None:
        """Moderation state of ``slug`` changed: reload here, tell the other processes."""
        self._states.pop(slug, None)
        self._state_epoch += 1
        await self.bus.publish(slug, [{"type": "_state"}])
        return await self.state(slug)

    async def state_by_channel_id(self, channel_id: int) -> ChannelChatState | None:
        async with self.db.session() as session:
            channel = await channel_queries.get_channel(session, channel_id)
        return None if channel is None else await self.state(channel.slug)

    # -- bus delivery ---------------------------------------------------------------------
    def blocks_changed(self, user_id: int) -> None:
        """A user blocked or unblocked someone: every process reloads their sockets' sets."""
        self._spawn(self.bus.publish(BLOCKS_TOPIC, [{"type": "_blocks", "user_id": user_id}]))

    def follow_changed(self, channel_id: int, user_id: int, following: bool) -> None:
        """A follow was committed or removed: followers-only chat sees it at once here, and
        every other process through the bus (the cache of followers holds positives only, so
        an unfollow must reach each process or it would keep letting the user chat)."""
        self.followers.apply(channel_id, user_id, following)
        self._spawn(
            self.bus.publish(
                BLOCKS_TOPIC,
                [
                    {
                        "type": "_follow",
                        "channel_id": channel_id,
                        "user_id": user_id,
                        "following": following,
                    }
                ],
            )
        )

    @property
    def _blocked(self) -> dict[int, tuple[set[int], int]]:
        """The block lists held here (tests wait on it)."""
        return self.blocks.held

    async def blocked_for(self, user_id: int) -> set[int]:
        """The ids ``user_id`` blocked, shared by all their sockets here (blocks.py); every
        socket that got the set gives it back with ``release_blocked``."""
        return await self.blocks.acquire(user_id)

    def release_blocked(self, user_id: int) -> None:
        self.blocks.release(user_id)

    def _deliver(self, slug: str, events: list[dict[str, Any]]) -> None:
        room = self.rooms.get(slug)
        for event in events:
            kind = event.get("type", "")
            if kind == "_blocks":
                self._spawn(self.blocks.reload(event["user_id"]))
                continue
            if kind == "_follow":
                self.followers.apply(
                    event["channel_id"], event["user_id"], bool(event["following"])
                )
                continue
            if kind == "_state":
                self._states.pop(slug, None)
                self._state_epoch += 1
                continue
            if kind == "_account":
                self.account_epoch += 1
                self._spawn(self.recheck(self.sockets_of(event["user_id"])))
                continue
            if kind == "chat:message" or kind == "chat:deleted":
                recent = self.recent.get(slug)
                if recent is not None:
                    recent.apply(event)
            elif kind == "stream:status":
                state = self._states.get(slug)
                if state is not None:
                    live = bool(event.get("live"))
                    state.stream_id = event.get("stream_id") if live else None
                    state.stream_title = event.get("title") if live else None
                    if not live:
                        state.viewers = 0
            if kind.startswith("_") or room is None or room.closed:
                continue
            room.push(event)

    # -- accounts behind open sockets -------------------------------------------------------
    def account_changed(self, user_id: int) -> None:
        """The account, its role or one of its credentials changed (after the commit): every
        process re-checks that user's open sockets."""
        self._spawn(self.bus.publish(BLOCKS_TOPIC, [{"type": "_account", "user_id": user_id}]))

    def sockets_of(self, user_id: int) -> list[Client]:
        return [c for room in list(self.rooms.values()) for c in room.by_user.get(user_id, ())]

    async def recheck(self, clients: Iterable[Client]) -> None:
        """Re-read the account and credential behind these sockets (accounts.py)."""
        await self.accounts.recheck(clients)

    async def current(self, client: Client) -> Principal | None:
        """The socket's principal, re-checked first if stale; None once it may not act."""
        return await self.accounts.current(client)

    def end_socket(self, client: Client, code: str, message: str | None = None) -> None:
        """Tell the socket why (chat:error ``code``) and close it with 1008 (accounts.py)."""
        self.accounts.end_socket(client, code, message)

    # -- rooms and sockets ----------------------------------------------------------------
    def join(self, slug: str, client: Client) -> Room:
        room = self.rooms.get(slug)
        if room is None or room.closed:
            room = Room(
                slug,
                tick=self.cs.tick,
                send_limit=self.cs.send_queue_bytes,
                big_room=self.cs.big_room,
                presence_interval=self.cs.presence_interval,
                on_empty=self._room_empty,
                on_drop=self._dropped,
            )
            self.rooms[slug] = room
            self.recent[slug] = RecentMessages(self.cs.history)
        room.add(client)
        return room

    def _room_empty(self, room: Room) -> None:
        if self.rooms.get(room.slug) is room:
            del self.rooms[room.slug]
            self.recent.pop(room.slug, None)

    def _dropped(self, slug: str) -> None:
        self.dropped += 1
        self.metrics.dropped.labels(slug).inc()
        log.info("chat %s: dropped a socket that fell behind (send queue full)", slug)

    async def presence(self, slug: str, user: dict[str, Any], joined: bool) -> None:
        kind = "chat:user-joined" if joined else "chat:user-left"
        await self.bus.publish(slug, [{"type": kind, "users": [user]}])

    async def history(self, state: ChannelChatState, blocked: set[int]) -> list[dict[str, Any]]:
        """The join history from the room's in-memory window (recent.py): no query once the
        window is loaded, however many sockets join."""
        recent = self.recent.get(state.slug)
        if recent is None:  # the room closed under this socket: answer without keeping it
            recent = RecentMessages(self.cs.history)
        await recent.window(lambda limit: self._load_recent(state, limit))
        if recent.badges_for is not state:
            self._rebadge(recent, state)
        return recent.for_reader(blocked)

    async def _load_recent(self, state: ChannelChatState, limit: int) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            # Looked up at call time: tests count these calls.
            rows = await chat_store.recent_messages(session, state.channel_id, limit)
            admins = await chat_store.admin_ids(session, {r.user_id for r in rows})
        return [self.message_event(state, r, r.user_id in admins) for r in rows]

    @staticmethod
    def _rebadge(recent: RecentMessages, state: ChannelChatState) -> None:
        """Owner/moderator badges as of ``state`` (the history shows today's roles); new
        dicts, since the old ones may still sit in a room's batch."""
        for i, event in enumerate(recent.items):
            user = event["user"]
            now = badges(state, user["id"], "admin" in user["badges"])
            if now != user["badges"]:
                recent.items[i] = {**event, "user": {**user, "badges": now}}
        recent.badges_for = state

    def message_event(
        self, state: ChannelChatState, m: StoredMessage, is_admin: bool
    ) -> dict[str, Any]:
        return {
            "type": "chat:message",
            "id": m.id,
            "user": {
                "id": m.user_id,
                "username": m.username,
                "display_name": m.display_name,
                "badges": badges(state, m.user_id, is_admin),
            },
            "content": m.content,
            "created_at": _iso(m.created_at),
        }

    def stream_events(self, state: ChannelChatState) -> list[dict[str, Any]]:
        """The stream:status and stream:viewers a joining socket starts from: the in-memory
        values kept by the registry's stream:status events and the viewer update loop, the
        count of a stream counted here straight from the registry (``update_viewers``)."""
        live = state.stream_id is not None
        viewers = state.viewers
        stream = self.registry.get(state.slug)
        if (
            stream is not None
            and stream.viewers is not None
            and stream.stream_id == state.stream_id
        ):
            viewers = stream.viewers
        return [
            {
                "type": "stream:status",
                "live": live,
                "stream_id": state.stream_id,
                "title": state.stream_title if live else None,
            },
            {"type": "stream:viewers", "viewers": viewers if live else 0},
        ]

    # -- sending --------------------------------------------------------------------------
    async def send(
        self, state: ChannelChatState, user: Actor, public: dict[str, Any], content: object
    ) -> dict[str, Any]:
        """Check, store, then publish one message; the chat:message event, or ChatError."""
        try:
            event = await self._send(state, user, public, content)
        except ChatError as err:
            self.metrics.refused.labels(err.code).inc()
            raise
        self.metrics.messages.inc()
        return event

    async def _send(
        self, state: ChannelChatState, user: Actor, public: dict[str, Any], content: object
    ) -> dict[str, Any]:
        text = clean_content(content, self.cs.max_length)
        now = datetime.now(UTC)
        uid = user.id
        if uid in state.bans:
            raise ChatError("banned", "you are banned from this chat", status=403)
        until = state.timeouts.get(uid)
        if until is not None and until > now:
            left = (until - now).total_seconds()
            raise ChatError(
                "timed_out",
                f"you are timed out for {left:.0f} more seconds",
                status=403,
                retry_after=left,
            )
        privileged = can_moderate(state, user)
        if (
            state.followers_only
            and not privileged
            and not await self.followers.follows(state.channel_id, uid)
        ):
            raise ChatError(
                "followers_only", "only followers of this channel can chat right now", status=403
            )
        mono = time.monotonic()
        key = (state.channel_id, uid)
        if state.slow_mode_seconds and not privileged:
            last = self._slow.get(key)
            if last is not None and mono - last < state.slow_mode_seconds:
                wait = state.slow_mode_seconds - (mono - last)
                raise ChatError(
                    "slow_mode",
                    f"slow mode is on: wait {wait:.0f} more seconds",
                    status=429,
                    retry_after=wait,
                )
        self.limiter.check(key, mono)
        text = apply_filter(text, state.word_filter, state.filter_mode)
        self.limiter.record(key, mono)
        self._slow[key] = mono
        row = NewMessage(state.channel_id, state.stream_id, uid, text, now)
        new_id = await self.writer.store(row)
        event = self.message_event(
            state,
            StoredMessage(
                new_id,
                state.channel_id,
                row.stream_id,
                uid,
                public["username"],
                public["display_name"],
                text,
                now,
            ),
            user.is_admin,
        )
        await self.bus.publish(state.slug, [event])
        return event

    # -- moderation (moderation.py) -------------------------------------------------------
    @staticmethod
    def require_moderator(state: ChannelChatState, actor: Actor) -> None:
        require_moderator(state, actor)

    async def delete_message(
        self, actor: Actor, message_id: object, room_state: ChannelChatState | None = None
    ) -> dict[str, Any]:
        return await self.moderation.delete_message(actor, message_id, room_state)

    async def timeout(
        self, state: ChannelChatState, actor: Actor, target_id: object, seconds: object
    ) -> dict[str, Any]:
        return await self.moderation.timeout(state, actor, target_id, seconds)

    async def untimeout(self, state: ChannelChatState, actor: Actor, target_id: object) -> bool:
        return await self.moderation.untimeout(state, actor, target_id)

    async def ban(
        self, state: ChannelChatState, actor: Actor, target_id: object, reason: object = ""
    ) -> dict[str, Any]:
        return await self.moderation.ban(state, actor, target_id, reason)

    async def unban(self, state: ChannelChatState, actor: Actor, target_id: object) -> bool:
        return await self.moderation.unban(state, actor, target_id)

    # -- stream status and viewers ----------------------------------------------------------
    def _stream_started(self, stream: LiveStream) -> None:
        self._spawn(
            self.bus.publish(
                stream.slug,
                [
                    {
                        "type": "stream:status",
                        "live": True,
                        "stream_id": stream.stream_id,
                        "started_at": _iso(stream.started_at),
                    }
                ],
            )
        )

    def _stream_ended(self, stream: LiveStream) -> None:
        self._spawn(
            self.bus.publish(
                stream.slug, [{"type": "stream:status", "live": False, "stream_id": None}]
            )
        )

    async def _viewer_loop(self) -> None:
        interval = self.settings.hls.viewer_update_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.update_viewers()
            except Exception:
                log.exception("chat: viewer count update failed")

    async def update_viewers(self) -> None:
        """stream:viewers to each room whose count changed; the state keeps what joins start
        from.

        A stream served here is counted here: the HTTP layer's recount leaves its count on
        the registry's ``LiveStream.viewers``, read from memory. Only rooms whose stream
        another process counts (it ingests the stream; they share the database and the bus)
        are read from the stream rows that process writes, in one query for all of them;
        that query also brings the title of a stream started since the state was loaded
        (the start event carries none). A title edited later comes by ``stream_edited``.
        """
        rooms = {room.slug: room for room in self.rooms.values() if room.clients}
        if not rooms:
            return
        counts: dict[str, int] = {}
        from_rows: list[str] = []
        for slug in rooms:
            live = self.registry.get(slug)
            if live is None or live.viewers is None:
                from_rows.append(slug)
                continue
            counts[slug] = live.viewers
            state = self._states.get(slug)
            if state is not None and state.stream_id == live.stream_id:
                state.viewers = live.viewers
                if state.stream_title is None:
                    from_rows.append(slug)  # for its title only
        if from_rows:
            async with self.db.session() as session:
                rows = await queries.live_viewer_counts(session, from_rows)
            for row in rows:
                counted_here = row.slug in counts
                if not counted_here:
                    counts[row.slug] = row.viewers
                state = self._states.get(row.slug)
                if state is not None and state.stream_id == row.stream_id:
                    state.stream_title = row.title
                    if not counted_here:
                        state.viewers = row.viewers
        for slug, room in rooms.items():
            count = counts.get(slug, 0)
            if room.viewers != count:
                room.viewers = count
                room.push({"type": "stream:viewers", "viewers": count})

    async def stream_edited(self, slug: str) -> None:
        """The channel's live stream was edited (its title): the state every process keeps
        holds the title joins are told, so it is reloaded everywhere, as after a moderation
        change (the viewer loop no longer reads titles of streams it counts in memory)."""
        await self.changed(slug)
