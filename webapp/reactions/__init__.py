"""Live reactions (issue 16): logged-in viewers tap an emoji under the player and it floats over
everyone's player. Rides on the chat room (``CHAT_KEY``): the ``reaction:send`` frame in,
``reaction:burst`` events out (counts per emoji per tick, not one event per tap), the emoji set
in a joining socket's first frame (``reaction:set``). live.py says how; the page's side is
static/js/reactions.js. The room's emotes are accepted too (emote_codes.py), and any codes from
sources other areas put under ``REACTION_CODES_KEY``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage.chat import ChannelChatState

from ..keys import CHAT_KEY, DB_KEY, REACTION_CODES_KEY, SETTINGS_KEY
from .emote_codes import EmoteCodes
from .live import ReactionRooms

REACTIONS_KEY: web.AppKey[ReactionRooms] = web.AppKey("reactions")


def setup(app: web.Application) -> None:
    chat = app[CHAT_KEY]
    sources = app.setdefault(REACTION_CODES_KEY, [])
    emotes = EmoteCodes(app[DB_KEY])
    reactions = ReactionRooms(app[SETTINGS_KEY].reactions, chat, sources, emotes)
    chat.bus_listeners.append(emotes.on_bus)
    app[REACTIONS_KEY] = reactions
    chat.register_frame("reaction:send", reactions.on_send)

    async def on_join(service: Any, state: ChannelChatState, client: Any) -> list[dict[str, Any]]:
        return reactions.join_events(state)

    chat.join_hooks.append(on_join)


__all__ = ["REACTIONS_KEY", "setup"]
