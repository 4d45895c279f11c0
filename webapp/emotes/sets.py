"""The emote sets each process holds in memory, and how they ride on the chat room.

A joining socket gets the global set and its channel's set in its first frame (``emotes:map``,
from the chat service's join hooks), from memory: a set is read from the database once, then
kept current by the changes themselves, which carry the whole new set through the chat bus:

* a channel's set changed: ``emotes:changed`` (``scope: "channel"``) is published to that
  room; every process updates its copy as the bus delivers it (a bus listener), and the
  room's sockets get it with the tick's other events;
* the global set changed: an internal ``_emotes`` event on the ``_emotes`` topic; every process
  updates its copy and puts ``emotes:changed`` (``scope: "global"``) into each of its rooms.

A version bumped by every change keeps a load that raced one from caching what it read.

Follower-only emotes: the server decides, per message, whether its author may use them (the
client cannot know who follows): a message hook marks the ``chat:message`` of a follower (or
the owner, a moderator, an admin) with ``"follower_emotes": true`` when the channel has any
follower-only emote; the client renders those emotes only in marked messages. The follower
check is the chat's own cache of followers (positives kept, changes applied from the bus).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from aiohttp import web

from storage import Database
from storage import emotes as store
from storage.chat import ChannelChatState
from storage.emote_models import Emote

from ..keys import CHAT_KEY
from .pictures import urls

log = logging.getLogger(__name__)

TOPIC = "_emotes"  # bus topic of global changes ("_" cannot start a channel slug)
# Channel sets kept per process; the least recently used go first (re-read when needed).
CHANNELS_KEPT = 10_000


def emote_json(row: Emote) -> dict[str, Any]:
    return {
        "id": row.id,
        "code": row.code,
        "scope": "global" if row.channel_id is None else "channel",
        "animated": row.animated,
        "follower_only": row.follower_only,
        "urls": urls(row.file_key, row.animated),
    }


class EmoteSets:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.global_set: list[dict[str, Any]] | None = None
        self.channels: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self._version = 0
        self._lock = asyncio.Lock()
        self.loads = 0  # reads from the database (tests check joins cost none)

    async def _read(self, channel_id: int | None) -> list[dict[str, Any]]:
        self.loads += 1
        async with self.db.session() as session:
            return [emote_json(r) for r in await store.list_emotes(session, channel_id)]

    async def global_emotes(self) -> list[dict[str, Any]]:
        held = self.global_set
        if held is not None:
            return held
        async with self._lock:
            while self.global_set is None:
                version = self._version
                read = await self._read(None)
                if self._version == version:
                    self.global_set = read
        return self.global_set

    async def channel_emotes(self, channel_id: int) -> list[dict[str, Any]]:
        held = self.channels.get(channel_id)
        if held is not None:
            self.channels.move_to_end(channel_id)
            return held
        while True:
            version = self._version
            read = await self._read(channel_id)
            if self._version == version:
                self._keep(channel_id, read)
                return read
            held = self.channels.get(channel_id)
            if held is not None:  # the change that raced the read brought the new set
                return held

    def _keep(self, channel_id: int, emotes: list[dict[str, Any]]) -> None:
        self.channels[channel_id] = emotes
        self.channels.move_to_end(channel_id)
        while len(self.channels) > CHANNELS_KEPT:
            self.channels.popitem(last=False)

    # -- changes, as the bus delivers them on every process ----------------------------------
    def set_channel(self, channel_id: int, emotes: list[dict[str, Any]]) -> None:
        self._version += 1
        self._keep(channel_id, emotes)

    def set_global(self, emotes: list[dict[str, Any]]) -> None:
        self._version += 1
        self.global_set = emotes


def install(app: web.Application, sets: EmoteSets) -> None:
    """Join hook, bus listener and message hook on the app's chat service."""
    service = app[CHAT_KEY]

    async def on_join(_svc: Any, state: ChannelChatState, _client: Any) -> list[dict[str, Any]]:
        try:
            return [
                {
                    "type": "emotes:map",
                    "global": await sets.global_emotes(),
                    "channel": await sets.channel_emotes(state.channel_id),
                }
            ]
        except Exception:  # a join never fails for want of emotes: they come with a change
            log.exception("emotes: could not read the emote sets for a join")
            return []

    def on_bus(slug: str, events: list[dict[str, Any]]) -> None:
        for event in events:
            kind = event.get("type")
            if kind == "emotes:changed" and event.get("scope") == "channel":
                sets.set_channel(int(event["channel_id"]), list(event["emotes"]))
            elif kind == "_emotes" and slug == TOPIC:
                sets.set_global(list(event["emotes"]))
                shown = {"type": "emotes:changed", "scope": "global", "emotes": event["emotes"]}
                for room in list(service.rooms.values()):
                    if not room.closed:
                        room.push(shown)

    async def mark_follower(state: ChannelChatState, user: Any, event: dict[str, Any]) -> None:
        try:
            channel = await sets.channel_emotes(state.channel_id)
            if not any(e["follower_only"] for e in channel):
                return
            uid = user.id
            if (
                user.is_admin
                or uid == state.owner_id
                or uid in state.moderators
                or await service.followers.follows(state.channel_id, uid)
            ):
                event["follower_emotes"] = True
        except Exception:  # never lose a stored message over its emotes
            log.exception("emotes: could not decide a message's follower-only emotes")

    service.join_hooks.append(on_join)
    service.bus_listeners.append(on_bus)
    service.message_hooks.append(mark_follower)


async def publish_channel(app: web.Application, channel_id: int, slug: str) -> None:
    """Tell every process and the channel's room the channel's set changed (after commit)."""
    sets = app[SETS_KEY]
    async with app[SETS_KEY].db.session() as session:
        emotes = [emote_json(r) for r in await store.list_emotes(session, channel_id)]
    sets.set_channel(channel_id, emotes)  # at once here, even before the bus delivers it
    event = {"type": "emotes:changed", "scope": "channel", "channel_id": channel_id}
    await app[CHAT_KEY].publish(slug, [{**event, "emotes": emotes}])


async def publish_global(app: web.Application) -> None:
    sets = app[SETS_KEY]
    async with sets.db.session() as session:
        emotes = [emote_json(r) for r in await store.list_emotes(session, None)]
    sets.set_global(emotes)
    await app[CHAT_KEY].publish(TOPIC, [{"type": "_emotes", "emotes": emotes}])


SETS_KEY = web.AppKey("emote_sets", EmoteSets)
