"""The analytics sampler: one background task that samples every live stream, writes the
viewer sessions' watch time in batches, and rolls the samples up.

Viewers come from the HLS layer's recount (``webapp.hls.viewers``), which leaves on each
``LiveStream`` of the registry its count and, per counted playback session, the rendition that
session's player polls (``LiveStream.audience``): the sampler reads those from memory, so a
sample costs no HTTP work. Chat messages, chatters and follows since the previous sample are
two indexed queries for all live streams at once (``storage.analytics.window_activity``).

Each counted session is credited the sample's seconds in memory and written every
``analytics.watch_flush_interval`` (added on, so a crash loses at most that much); the
rollup (``analytics.rollup_interval``) then recomputes the channels' hours and days touched
since the previous one, writes the final summary of streams that ended, and prunes. One task
does all of it in turn, so a stream's sessions are written before its summary is made.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from mediaserver.live import LiveRegistry
from mediaserver.settings import AnalyticsSettings
from storage import Database
from storage import analytics as queries
from storage.errors import out_of_room

log = logging.getLogger(__name__)


def viewer_key(session: str | bytes) -> str:
    """What is stored of a playback session: a short hash (the HLS layer's keys are session
    ids from the master playlist, or a salted hash of address and User-Agent)."""
    raw = session.encode() if isinstance(session, str) else session
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


class AnalyticsService:
    def __init__(
        self,
        db: Database,
        registry: LiveRegistry,
        settings: AnalyticsSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.registry = registry
        self.settings = settings
        self.clock = clock
        # stream id -> epoch second of its previous sample
        self._last: dict[int, int] = {}
        self._previous_tick: float | None = None
        # (stream id, viewer key, rendition) -> [first at, last at, seconds not yet written]
        self._watch: dict[tuple[int, str, str], list[int]] = {}
        self._rolled_until: int | None = None
        self.samples_written = 0

    async def sample(self) -> int:
        """Sample every live stream now; how many samples were written."""
        now = self.clock()
        at = int(now)
        since = self._previous_tick if self._previous_tick is not None else now - self._interval
        self._previous_tick = now
        live = [s for s in self.registry if not s.ended]
        streams = {s.stream_id: s.channel_id for s in live}
        for gone in set(self._last) - set(streams):
            del self._last[gone]
        rows = []
        for stream in live:
            previous = self._last.get(stream.stream_id)
            if previous is None:
                started = int(stream.started_at.timestamp())
                seconds = max(1, min(int(self._interval), at - started))
            else:
                seconds = min(at - previous, int(2 * self._interval) + 1)
            if seconds <= 0:
                continue
            self._last[stream.stream_id] = at
            audience = stream.audience
            viewers = stream.viewers or 0
            rows.append(
                queries.Sample(
                    stream.stream_id,
                    stream.channel_id,
                    at,
                    seconds,
                    viewers,
                    dict(Counter(audience.values())),
                )
            )
            self._credit(stream.stream_id, audience, at, seconds)
        if not rows:
            return 0
        async with self.db.session() as session:
            lag = self.settings.activity_lag
            chat, follows = await queries.window_activity(
                session,
                streams,
                datetime.fromtimestamp(since - lag, UTC),
                datetime.fromtimestamp(now - lag, UTC),
            )
            rows = [
                queries.Sample(
                    r.stream_id,
                    r.channel_id,
                    r.at,
                    r.seconds,
                    r.viewers,
                    r.renditions,
                    messages=chat.get(r.stream_id, (0, 0))[0],
                    chatters=chat.get(r.stream_id, (0, 0))[1],
                    follows=follows.pop(r.channel_id, 0),  # once per channel
                )
                for r in rows
            ]
            await queries.record_samples(session, rows)
            await session.commit()
        self.samples_written += len(rows)
        return len(rows)

    @property
    def _interval(self) -> float:
        return self.settings.sample_interval

    def _credit(
        self, stream_id: int, audience: dict[str | bytes, str], at: int, seconds: int
    ) -> None:
        watch = self._watch
        room = self.settings.max_tracked_sessions
        for session, rendition in audience.items():
            key = (stream_id, viewer_key(session), rendition[:32])
            entry = watch.get(key)
            if entry is None:
                if len(watch) >= room:
                    continue  # memory bound: counted as a viewer, not in watch time
                watch[key] = [at, at, seconds]
            else:
                entry[1] = at
                entry[2] += seconds

    async def flush_watch(self) -> int:
        """Write the watch time gathered since the last flush; how many sessions."""
        if not self._watch:
            return 0
        batch, self._watch = self._watch, {}
        deltas = [
            queries.WatchDelta(stream_id, key, rendition, first, last, seconds)
            for (stream_id, key, rendition), (first, last, seconds) in batch.items()
        ]
        async with self.db.session() as session:
            await queries.add_watch(session, deltas)
            await session.commit()
        return len(deltas)

    async def roll_up(self) -> list[int]:
        """Flush, roll the channels' hours and days up since the previous run, sum up the
        streams that ended and prune; the ids of the streams summed up."""
        await self.flush_watch()
        now = int(self.clock())
        s = self.settings
        # After a start, the last day again: samples written before a crash are rolled up.
        since = self._rolled_until if self._rolled_until is not None else now - queries.DAY
        async with self.db.session() as session:
            await queries.rollup(session, since, now)
            done = await queries.finish_streams(
                session, step=s.series_step, max_points=s.series_max_points
            )
            await queries.prune(session, now, s.raw_retention_days, s.hourly_retention_days)
            await session.commit()
        self._rolled_until = now
        return done

    async def run(self) -> None:
        s = self.settings
        next_flush = next_rollup = time.monotonic()
        next_flush += s.watch_flush_interval
        no_room = False  # the last tick failed for want of room on disk (logged once)
        while True:
            await asyncio.sleep(s.sample_interval)
            try:
                written = await self.sample()
                mono = time.monotonic()
                if mono >= next_rollup:
                    next_rollup = mono + s.rollup_interval
                    next_flush = mono + s.watch_flush_interval
                    await self.roll_up()
                elif mono >= next_flush:
                    next_flush = mono + s.watch_flush_interval
                    await self.flush_watch()
            except Exception as exc:
                # A full disk is the server's condition, not a bug: one line when it starts,
                # not a traceback every tick (the samples of those ticks are skipped).
                if not out_of_room(exc):
                    log.exception("analytics sampling failed")
                elif not no_room:
                    log.warning("analytics: no room on disk, samples are skipped: %s", exc)
                no_room = out_of_room(exc)
            else:
                no_room = no_room and not written
