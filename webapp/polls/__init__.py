"""Live polls (issue 16): the owner, a moderator or an admin starts a poll from the chat column
(question, 2 to 5 options, duration); logged-in viewers vote once; the room sees the counts move
and the result when it ends; the result is kept with the broadcast (its analytics report lists
it) and in the JSON API.

Everything rides on the chat room (``CHAT_KEY``): client frames ``poll:start``, ``poll:vote``
and ``poll:end`` (``register_frame``), the running poll in a joining socket's first frame
(``join_hooks``), events to every process through ``publish`` and back through
``bus_listeners``. live.py holds the rules, api.py the JSON API, storage.polls the SQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from storage.chat import ChannelChatState

from ..keys import CHAT_KEY, DB_KEY, SETTINGS_KEY
from . import api
from .live import PollRooms

POLLS_KEY: web.AppKey[PollRooms] = web.AppKey("polls")


def setup(app: web.Application) -> None:
    chat = app[CHAT_KEY]
    polls = PollRooms(app[SETTINGS_KEY].polls, app[DB_KEY], chat)
    app[POLLS_KEY] = polls
    chat.register_frame("poll:start", polls.on_start)
    chat.register_frame("poll:vote", polls.on_vote)
    chat.register_frame("poll:end", polls.on_end)

    async def on_join(service: Any, state: ChannelChatState, client: Any) -> list[dict[str, Any]]:
        return await polls.join_events(state)

    chat.join_hooks.append(on_join)
    chat.bus_listeners.append(polls.on_bus)
    api.setup_routes(app)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        polls.start()
        yield
        await polls.stop()

    app.cleanup_ctx.append(lifetime)


__all__ = ["POLLS_KEY", "setup"]
