"""The chat of one server process: its rooms and the bus events that reach them; the one face
(``ChatService``) the socket, the API and the other areas use.

The parts it holds each live in their own module: the channels' cached chat state in
states.py, the send path (checks, then the writer's group commit in writer.py, then the bus) in
sending.py, the history a join starts from in history.py, stream status and viewer counts in
stream_status.py, moderation (deletes, timeouts, bans) in moderation.py, the readers' block
lists in blocks.py, the follower cache of followers-only chat in followers.py and the
re-checks of the accounts behind open sockets in accounts.py.

Every event goes through the bus, even within one process, and ``_deliver`` hands it on here:
to the room's next tick, and to the caches it changes. Moderation state (moderators, bans,
timeouts, chat settings) is cached per channel in memory; every change reloads it here and
publishes an internal ``_state`` event so the other processes drop their copy too. Internal
events (type starting with ``_``) never reach a socket.

Account changes (disable, promote/demote, logout, token revocation) are published as
``_account`` events: every process re-reads the account and credential behind that user's open
sockets and updates their principals in place, or ends the sockets (see principal.py). Every
permission is checked when it is used, from memory first, so a refused frame costs no query.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import datetime
from typing import Any

from mediaserver.cluster.counts import ClusterCounts, CountsUnavailable
from mediaserver.live import LiveRegistry
from mediaserver.settings import Settings
from mediaserver.tasks import stop_task, stop_tasks
from storage import Database
from storage.chat import ChannelChatState, StoredMessage

from .accounts import SocketAccounts
from .blocks import BlockLists
from .bus import ChatBus, make_bus
from .followers import Followers
from .history import JoinHistory, message_event
from .metrics import chat_metrics
from .moderation import Actor, ChatModeration, require_moderator
from .principal import Principal
from .room import Client, Room
from .sending import MessageHook, MessageSender
from .states import ChannelStates
from .stream_status import StreamStatus
from .writer import MessageWriter

log = logging.getLogger(__name__)

# Bus topic for per-user (not per-room) news; "_" cannot start a channel slug.
BLOCKS_TOPIC = "_users"


# A handler for a client frame type that another module adds to the room (issue 16: polls,
# reactions, raids, typing...): called with the service, the channel's state, the sending socket,
# the sender as last checked and the parsed frame, once the sender is known to be logged in and
# still allowed to act. It checks its own permissions and returns an event for the sender only
# (an error) or None. It may raise ChatError (content.py).
FrameHandler = Callable[
    ["ChatService", ChannelChatState, Client, Principal, dict[str, Any]],
    Awaitable[dict[str, Any] | None],
]

# Events another module adds to a joining socket's first frame, after the history (the poll
# running now, the room's reaction set...): called with the service, the channel's state and
# the joining socket. Joins must stay cheap: answer from memory, not a query per join.
JoinHook = Callable[["ChatService", ChannelChatState, Client], Awaitable[list[dict[str, Any]]]]


class ChatService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        registry: LiveRegistry,
        metrics: Any = None,
        counts: ClusterCounts | None = None,
    ) -> None:
        self.settings = settings
        # Shared counters of a cluster (Redis, issue 15): send limits and presence; None on
        # one node.
        self.counts = counts
        self._presence_task: asyncio.Task[None] | None = None
        self._presence_changes = 0  # joins and leaves recorded in Redis by this node
        self.cs = settings.chat
        self.db = db
        self.registry = registry
        self.bus: ChatBus = make_bus(self.cs.bus)
        self.writer = MessageWriter(db)
        self.rooms: dict[str, Room] = {}
        self.join_history = JoinHistory(db, self.cs.history)
        self.states = ChannelStates(db)
        # Bumped by every _account event, so a socket that opened during one re-checks.
        self.account_epoch = 0
        self.followers = Followers(db, self.cs.badge_cache_size)  # followers-only, badges
        self._tasks: set[asyncio.Task[Any]] = set()
        self.blocks = BlockLists(db, self._spawn)
        self.moderation = ChatModeration(self)
        self.dropped = 0  # sockets disconnected for overflowing their send queue
        self.metrics = chat_metrics(getattr(metrics, "registry", None))
        self.accounts = SocketAccounts(db, self.cs, self.metrics, self._spawn)
        self.sender = MessageSender(
            self.cs, self.followers, self.writer, self.bus, self.metrics, counts
        )
        self.streams = StreamStatus(
            registry,
            db,
            self.bus,
            self.states,
            self.rooms,
            self._spawn,
            settings.hls.viewer_update_interval,
        )
        # Client frame types beyond chat's own (register_frame); socket.handle_frame reads it.
        self.frame_handlers: dict[str, FrameHandler] = {}
        self.join_hooks: list[JoinHook] = []  # socket.chat_socket calls them in order
        # Add fields to each accepted chat:message before it is published (sending.py).
        self.message_hooks: list[MessageHook] = self.sender.hooks
        # Told of every batch the bus delivers here, internal events too, before the room gets
        # it: caches another module keeps per process (the emote map) follow changes this way.
        self.bus_listeners: list[Callable[[str, list[dict[str, Any]]], None]] = []
        self._stopped = False

    # -- extensions (issue 16) --------------------------------------------------------------
    def register_frame(self, kind: str, handler: FrameHandler) -> None:
        """Let another module answer a client frame type (``area:verb``), so features that ride
        on the room (polls, reactions, raids) add theirs without editing the socket loop."""
        if kind in self.frame_handlers or kind.startswith(("chat:", "_")):
            raise ValueError(f"frame type {kind!r} is taken or reserved")
        self.frame_handlers[kind] = handler

    async def publish(self, slug: str, events: list[dict[str, Any]]) -> None:
        """Put events into a room on every process (through the bus); each process's room
        sends them at its next tick in one frame with the rest of that tick's events."""
        await self.bus.publish(slug, events)

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        await self.bus.start(self._deliver)
        self.writer.start()
        self.streams.start()
        if self.counts is not None:
            self._presence_task = asyncio.get_running_loop().create_task(self._presence_loop())

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self.streams.stop()
        if self._presence_task is not None and self.counts is not None:
            await stop_task(self._presence_task)
            # Leaving in an orderly way: this node's users are gone at the others' next
            # refresh instead of when the entries expire.
            with contextlib.suppress(CountsUnavailable):
                await self.counts.presence_put({slug: [] for slug in self.rooms})
        for room in list(self.rooms.values()):
            for client in list(room.clients):
                room.remove(client)
                with contextlib.suppress(Exception):
                    await client.ws.close(code=1001, message=b"server shutting down")
            await room.stop()
        await self.writer.stop()
        await self.bus.close()
        await stop_tasks(self._tasks)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- channel state (states.py) --------------------------------------------------------
    async def state(self, slug: str) -> ChannelChatState | None:
        """The channel's cached chat state; None for an unknown channel."""
        return await self.states.get(slug)

    async def changed(self, slug: str) -> ChannelChatState | None:
        """Moderation state of ``slug`` changed: reload here, tell the other processes."""
        self.states.forget(slug)
        await self.bus.publish(slug, [{"type": "_state"}])
        return await self.state(slug)

    async def state_by_channel_id(self, channel_id: int) -> ChannelChatState | None:
        return await self.states.by_channel_id(channel_id)

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
        for listener in self.bus_listeners:
            try:
                listener(slug, events)
            except Exception:
                log.exception("chat bus listener failed")
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
                self.states.forget(slug)
                continue
            if kind == "_account":
                self.account_epoch += 1
                self._spawn(self.recheck(self.sockets_of(event["user_id"])))
                continue
            if kind == "chat:message" or kind == "chat:deleted":
                self.join_history.apply(slug, event)
            elif kind == "stream:status":
                self.states.stream_status(slug, event)
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
            self.join_history.open(slug)
        room.add(client)
        return room

    def flush_at(self, slug: str, earliest: float) -> float | None:
        """When this process's room of ``slug`` broadcasts next at or after ``earliest``
        (loop time), or None if it has no room or would broadcast at once (Room.flush_at)."""
        room = self.rooms.get(slug)
        return None if room is None else room.flush_at(earliest)

    def _room_empty(self, room: Room) -> None:
        if self.rooms.get(room.slug) is room:
            del self.rooms[room.slug]
            self.join_history.close(room.slug)

    def _dropped(self, slug: str) -> None:
        self.dropped += 1
        self.metrics.dropped.labels(slug).inc()
        log.info("chat %s: dropped a socket that fell behind (send queue full)", slug)

    async def presence(self, slug: str, user: dict[str, Any], joined: bool) -> None:
        kind = "chat:user-joined" if joined else "chat:user-left"
        if self.counts is not None:
            # Recorded before it is announced, so a node that reads Redis after the event
            # finds the user; a failure is mended by the next refresh (presence_put).
            self._presence_changes += 1
            with contextlib.suppress(CountsUnavailable):
                await self.counts.presence_change(slug, user, joined)
        await self.bus.publish(slug, [{"type": kind, "users": [user]}])

    # -- presence across a cluster (Redis, issue 15) ----------------------------------------
    async def sync_presence(self, room: Room) -> None:
        """A room new on this node learns who is in it on the other nodes before its first
        socket is told (one Redis read per room opened here; nothing on one node)."""
        if self.counts is None or room.presence_synced:
            return
        since = room.presence_seq
        try:
            users = (await self.counts.presence_read([room.slug]))[room.slug]
        except CountsUnavailable:
            return
        room.reconcile(users, since)

    async def _presence_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cluster.counts_refresh)
            try:
                await self.refresh_presence()
            except Exception:
                log.exception("chat: presence refresh failed")

    async def refresh_presence(self) -> None:
        """Store who is in each room on this node (with a fresh TTL), then read each room's
        users on every live node and reconcile: users of a node that stopped refreshing (it
        died) leave, with chat:user-left, once its entries expire."""
        assert self.counts is not None
        rooms = [room for room in self.rooms.values() if not room.closed]
        try:
            for _ in range(3):
                # A join or leave here while the snapshot was on its way may have been undone
                # by it: store the state again then (rare: only in that round trip).
                changes = self._presence_changes
                await self.counts.presence_put(self._here(rooms))
                if changes == self._presence_changes:
                    break
            since = {room.slug: room.presence_seq for room in rooms if room.clients}
            read = await self.counts.presence_read(list(since))
        except CountsUnavailable:
            return  # counted and logged there; the bus's events still keep presence
        for slug, everyone in read.items():
            held = self.rooms.get(slug)
            if held is not None and not held.closed:
                held.reconcile(everyone, since[slug])

    @staticmethod
    def _here(rooms: list[Room]) -> dict[str, list[dict[str, Any]]]:
        """The users this node announced in each room (one public face per user)."""
        mine: dict[str, list[dict[str, Any]]] = {}
        for room in rooms:
            users = []
            for uid in room.announced:
                client = next(iter(room.by_user.get(uid, ())), None)
                if client is not None and client.user is not None:
                    users.append(client.user)
            mine[room.slug] = users
        return mine

    async def history(self, state: ChannelChatState, blocked: set[int]) -> list[dict[str, Any]]:
        """The join history from the room's in-memory window (history.py, recent.py): no query
        once the window is loaded, however many sockets join."""
        return await self.join_history.read(state, blocked)

    def message_event(
        self,
        state: ChannelChatState,
        m: StoredMessage,
        is_admin: bool,
        follower_since: datetime | None = None,
    ) -> dict[str, Any]:
        return message_event(state, m, is_admin, follower_since)

    def stream_events(self, state: ChannelChatState) -> list[dict[str, Any]]:
        """The stream:status and stream:viewers a joining socket starts from, from memory
        (stream_status.py)."""
        return self.streams.join_events(state)

    # -- sending (sending.py) -------------------------------------------------------------
    async def send(
        self, state: ChannelChatState, user: Actor, public: dict[str, Any], content: object
    ) -> dict[str, Any]:
        """Check, store, then publish one message; the chat:message event, or ChatError."""
        return await self.sender.send(state, user, public, content)

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

    # -- stream status and viewers (stream_status.py) ---------------------------------------
    async def update_viewers(self) -> None:
        """stream:viewers to each room whose count changed (what the loop does every
        ``hls.viewer_update_interval``)."""
        await self.streams.update_viewers()

    async def stream_edited(self, slug: str) -> None:
        """The channel's live stream was edited (its title): the state every process keeps
        holds the title joins are told, so it is reloaded everywhere, as after a moderation
        change (the viewer loop no longer reads titles of streams it counts in memory)."""
        await self.changed(slug)
