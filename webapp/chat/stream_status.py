"""``stream:status`` and ``stream:viewers`` for the chat rooms of this process.

The live registry's start and end of a stream are published on the bus as ``stream:status``
(every process's rooms hear it, and ``ChannelStates.stream_status`` keeps what joins are told);
a loop every ``hls.viewer_update_interval`` pushes ``stream:viewers`` to each room whose count
changed. A joining socket starts from the in-memory values (``join_events``): no query per join.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from mediaserver.live import LiveRegistry
from mediaserver.live.stream import LiveStream
from mediaserver.tasks import stop_task
from storage import Database, queries
from storage.chat import ChannelChatState

from .blocks import Spawn
from .bus import ChatBus
from .frames import iso_time
from .room import Room
from .states import ChannelStates

log = logging.getLogger(__name__)


class StreamStatus:
    def __init__(
        self,
        registry: LiveRegistry,
        db: Database,
        bus: ChatBus,
        states: ChannelStates,
        rooms: Mapping[str, Room],
        spawn: Spawn,
        interval: float,
    ) -> None:
        self.registry = registry
        self.db = db
        self.bus = bus
        self.states = states
        self.rooms = rooms  # the service's rooms (the same dict, kept current by the service)
        self._spawn = spawn  # runs a task the chat service cancels when it stops
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.registry.on_started(self._started)
        self.registry.on_ended(self._ended)
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)

    def _started(self, stream: LiveStream) -> None:
        event = {
            "type": "stream:status",
            "live": True,
            "stream_id": stream.stream_id,
            "started_at": iso_time(stream.started_at),
        }
        self._spawn(self.bus.publish(stream.slug, [event]))

    def _ended(self, stream: LiveStream) -> None:
        event = {"type": "stream:status", "live": False, "stream_id": None}
        self._spawn(self.bus.publish(stream.slug, [event]))

    def join_events(self, state: ChannelChatState) -> list[dict[str, Any]]:
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

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
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
        (the start event carries none). A title edited later comes by
        ``ChatService.stream_edited``.
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
            state = self.states.held.get(slug)
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
                state = self.states.held.get(row.slug)
                if state is not None and state.stream_id == row.stream_id:
                    state.stream_title = row.title
                    if not counted_here:
                        state.viewers = row.viewers
        for slug, room in rooms.items():
            count = counts.get(slug, 0)
            if room.viewers != count:
                room.viewers = count
                room.push({"type": "stream:viewers", "viewers": count})
