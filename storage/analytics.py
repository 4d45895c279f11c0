"""Analytics (issue 13): what a creator's dashboard draws, kept small for years of data.

Four layers, each made from the one before it, each kept as long as it is useful:

1. **Raw samples** (``analytics_samples``): every ``analytics.sample_interval`` seconds (10)
   the sampler writes one row per live stream: viewers counted by the HLS layer (in all and
   per rendition), chat messages, distinct chatters and new follows since the previous sample,
   and how many seconds the row stands for. Beside them, **viewer sessions**
   (``analytics_watch``): one row per (stream, HLS playback session, rendition) with the
   seconds that session was counted as watching, added on in batches. Both are raw events,
   kept ``raw_retention_days`` (3) once their stream's summary is final: a 10 s sample of
   1,000 live channels is 8.6 million rows a day, far too many to keep.
2. **Stream summaries** (``analytics_streams``): one row per broadcast, made from its samples
   and sessions when it ends (``finish_streams``): peak and average viewers, unique viewers,
   watch time, chat and follows, the rendition mix, and the viewer curve downsampled to at
   most ``series_max_points`` points (a few kilobytes). While a stream is live its figures are
   computed from the raw rows on each request (``stream_report``) instead.
3. **Hourly rollups per channel** (``analytics_channel_hours``): live seconds, viewer-seconds
   (watch time, and with live seconds the average), peak, messages and follows gained (from
   ``channel_follows``, live or not). Recomputed whole from the raw rows for every hour a
   rollup run touches (``rollup``), so running it again, late, or after a crash gives the
   same rows: a rollup always equals a recount. Kept ``hourly_retention_days`` (92) for the
   7-day view, drawn by the hour.
4. **Daily rollups per channel** (``analytics_channel_days``): the same sums and maxima over a
   UTC day, recomputed from that day's hours; kept as long as the channel. The 7/30/90-day
   totals read at most 90 of them through the primary key (channel, day): a year of 10,000
   channels is at most 3.65 million short rows, and a query reads only its channel's few.

Only sums and maxima are rolled up, so any range is the sum (and max) of its buckets; unique
viewers are exact per stream only (they do not add across streams). Follows gained are new
``channel_follows`` rows: an unfollow removes the row, so a bucket recomputed later counts
only the follows still there. Times are epoch seconds (see ``storage.analytics_models``).

Like ``storage.follows``: every function takes an ``AsyncSession``, flushes, never commits.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, delete, false, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.analytics_models import (
    AnalyticsChannelDay,
    AnalyticsChannelHour,
    AnalyticsSample,
    AnalyticsStream,
    AnalyticsWatch,
)
from storage.creator_models import Clip, StreamChapter
from storage.models import ChannelFollow, Message, Stream, StreamStatus
from storage.polls import PollRow, stream_polls

HOUR = 3600
DAY = 86400


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _table(model: type[Any]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _insert(session: AsyncSession, model: type[Any]) -> Any:
    """An INSERT with ``ON CONFLICT`` in the dialect of the session's database."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_table(model))


# -- writing: the sampler -------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    stream_id: int
    channel_id: int
    at: int
    seconds: int
    viewers: int
    renditions: Mapping[str, int]
    messages: int = 0
    chatters: int = 0
    follows: int = 0


@dataclass(frozen=True)
class WatchDelta:
    """Seconds to add to one session's watching of one rendition of one stream."""

    stream_id: int
    viewer_key: str
    rendition: str
    first_at: int
    last_at: int
    seconds: int


async def window_activity(
    session: AsyncSession, streams: Mapping[int, int], since: datetime, until: datetime
) -> tuple[dict[int, tuple[int, int]], dict[int, int]]:
    """Chat and follows in ``(since, until]`` for live streams (``{stream_id: channel_id}``):
    ``{stream_id: (messages, chatters)}`` and ``{channel_id: new follows}``. Messages deleted
    since were still sent and count as activity."""
    if not streams:
        return {}, {}
    chat_rows = await session.execute(
        select(Message.stream_id, func.count(), func.count(Message.user_id.distinct()))
        .where(
            Message.stream_id.in_(list(streams)),
            Message.created_at > since,
            Message.created_at <= until,
        )
        .group_by(Message.stream_id)
    )
    chat = {int(sid): (int(n), int(users)) for sid, n, users in chat_rows if sid is not None}
    follow_rows = await session.execute(
        select(ChannelFollow.channel_id, func.count())
        .where(
            ChannelFollow.channel_id.in_(set(streams.values())),
            ChannelFollow.created_at > since,
            ChannelFollow.created_at <= until,
        )
        .group_by(ChannelFollow.channel_id)
    )
    return chat, {int(cid): int(n) for cid, n in follow_rows}


async def record_samples(session: AsyncSession, samples: Sequence[Sample]) -> None:
    """Write one sample per live stream (and the stream's summary row, not final yet)."""
    if not samples:
        return
    await session.execute(
        insert(_table(AnalyticsSample)),
        [
            {
                "stream_id": s.stream_id,
                "channel_id": s.channel_id,
                "at": s.at,
                "seconds": s.seconds,
                "viewers": s.viewers,
                "renditions": dict(s.renditions),
                "messages": s.messages,
                "chatters": s.chatters,
                "follows": s.follows,
            }
            for s in samples
        ],
    )
    first = _insert(session, AnalyticsStream)
    await session.execute(
        first.on_conflict_do_nothing(index_elements=["stream_id"]),
        [
            {
                "stream_id": s.stream_id,
                "channel_id": s.channel_id,
                "started_at": s.at - s.seconds,
                "last_at": s.at,
                "renditions": {},
                "series": [],
            }
            for s in samples
        ],
    )
    await session.flush()


async def add_watch(session: AsyncSession, deltas: Sequence[WatchDelta]) -> None:
    """Add watched seconds to viewer sessions (a session's first delta creates its row)."""
    if not deltas:
        return
    stmt = _insert(session, AnalyticsWatch)
    table = _table(AnalyticsWatch)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["stream_id", "viewer_key", "rendition"],
            set_={
                "seconds": table.c.seconds + stmt.excluded.seconds,
                "last_at": stmt.excluded.last_at,
            },
        ),
        [
            {
                "stream_id": d.stream_id,
                "viewer_key": d.viewer_key,
                "rendition": d.rendition,
                "first_at": d.first_at,
                "last_at": d.last_at,
                "seconds": d.seconds,
            }
            for d in deltas
        ],
    )
    await session.flush()


# -- stream summaries -----------------------------------------------------------------------


@dataclass
class StreamFigures:
    started_at: int = 0
    last_at: int = 0
    live_seconds: int = 0
    viewer_seconds: int = 0
    peak_viewers: int = 0
    unique_viewers: int = 0
    watch_seconds: int = 0
    messages: int = 0
    chatters: int = 0
    follows: int = 0
    # {rendition: {"viewers": n, "seconds": s}}
    renditions: dict[str, dict[str, int]] = field(default_factory=dict)
    # [[offset s, average viewers, peak viewers, messages, follows], ...]
    series: list[list[float]] = field(default_factory=list)


def series_step(span: int, step: int, max_points: int) -> int:
    """Seconds per point of a curve ``span`` seconds long: ``step``, or a multiple of it that
    keeps the curve within ``max_points``."""
    return step * max(1, math.ceil(span / (step * max_points)))


async def summarize(
    session: AsyncSession, stream_id: int, *, step: int, max_points: int
) -> StreamFigures | None:
    """A stream's figures from its raw samples and sessions; None without samples."""
    rows = (
        await session.execute(
            select(
                AnalyticsSample.at,
                AnalyticsSample.seconds,
                AnalyticsSample.viewers,
                AnalyticsSample.messages,
                AnalyticsSample.follows,
            )
            .where(AnalyticsSample.stream_id == stream_id)
            .order_by(AnalyticsSample.at)
        )
    ).all()
    if not rows:
        return None
    figures = StreamFigures(started_at=rows[0][0] - rows[0][1], last_at=rows[-1][0])
    width = series_step(figures.last_at - figures.started_at, step, max_points)
    buckets: dict[int, list[int]] = {}
    for at, seconds, viewers, messages, follows in rows:
        figures.live_seconds += seconds
        figures.viewer_seconds += viewers * seconds
        figures.peak_viewers = max(figures.peak_viewers, viewers)
        figures.messages += messages
        figures.follows += follows
        # A sample stands for the seconds before it: it belongs to the point it ends in.
        point = max(0, at - figures.started_at - 1) // width
        bucket = buckets.setdefault(point, [0, 0, 0, 0, 0])
        bucket[0] += seconds
        bucket[1] += viewers * seconds
        bucket[2] = max(bucket[2], viewers)
        bucket[3] += messages
        bucket[4] += follows
    figures.series = [
        [point * width, round(b[1] / b[0], 2) if b[0] else 0.0, b[2], b[3], b[4]]
        for point, b in sorted(buckets.items())
    ]
    watch = await session.execute(
        select(
            AnalyticsWatch.rendition,
            func.count(AnalyticsWatch.viewer_key.distinct()),
            func.sum(AnalyticsWatch.seconds),
        )
        .where(AnalyticsWatch.stream_id == stream_id)
        .group_by(AnalyticsWatch.rendition)
    )
    figures.renditions = {
        rendition: {"viewers": int(n), "seconds": int(s or 0)} for rendition, n, s in watch
    }
    figures.watch_seconds = sum(r["seconds"] for r in figures.renditions.values())
    figures.unique_viewers = int(
        await session.scalar(
            select(func.count(AnalyticsWatch.viewer_key.distinct())).where(
                AnalyticsWatch.stream_id == stream_id
            )
        )
        or 0
    )
    figures.chatters = int(
        await session.scalar(
            select(func.count(Message.user_id.distinct())).where(Message.stream_id == stream_id)
        )
        or 0
    )
    return figures


async def finish_streams(session: AsyncSession, *, step: int, max_points: int) -> list[int]:
    """Write the final summary of every sampled stream that is no longer live; their ids."""
    pending = (
        await session.execute(
            select(AnalyticsStream.stream_id, Stream.status)
            .join(Stream, Stream.id == AnalyticsStream.stream_id)
            .where(AnalyticsStream.final == false())
        )
    ).all()
    done = []
    for stream_id, status in pending:
        if status is StreamStatus.LIVE:
            continue
        figures = await summarize(session, stream_id, step=step, max_points=max_points)
        values: dict[str, Any] = {"final": True}
        if figures is not None:
            values.update(vars(figures))
        await session.execute(
            update(AnalyticsStream).where(AnalyticsStream.stream_id == stream_id).values(**values)
        )
        done.append(stream_id)
    await session.flush()
    return done


# -- channel rollups ------------------------------------------------------------------------


async def rollup(session: AsyncSession, since: int, until: int) -> None:
    """Recompute every channel's hours from the hour of ``since`` to the hour of ``until``
    (inclusive) from the raw samples and follows, and the days those hours are in from their
    hours. Whole buckets are replaced, so a repeat (or an overlap) changes nothing."""
    h0 = since // HOUR * HOUR
    h1 = until // HOUR * HOUR + HOUR
    hours = _table(AnalyticsChannelHour)
    await session.execute(delete(hours).where(hours.c.hour >= h0, hours.c.hour < h1))
    s = _table(AnalyticsSample).c
    bucket = (s.at // HOUR * HOUR).label("hour")
    await session.execute(
        insert(hours).from_select(
            [
                "channel_id",
                "hour",
                "live_seconds",
                "viewer_seconds",
                "peak_viewers",
                "messages",
                "follows",
            ],
            select(
                s.channel_id,
                bucket,
                func.sum(s.seconds),
                func.sum(s.viewers * s.seconds),
                func.max(s.viewers),
                func.sum(s.messages),
                literal(0),
            )
            .where(s.at >= h0, s.at < h1)
            .group_by(s.channel_id, bucket),
        )
    )
    follows: dict[tuple[int, int], int] = defaultdict(int)
    created = await session.execute(
        select(ChannelFollow.channel_id, ChannelFollow.created_at).where(
            ChannelFollow.created_at >= from_epoch(h0), ChannelFollow.created_at < from_epoch(h1)
        )
    )
    for channel_id, at in created:
        follows[(channel_id, epoch(at) // HOUR * HOUR)] += 1
    if follows:
        stmt = _insert(session, AnalyticsChannelHour)
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["channel_id", "hour"], set_={"follows": stmt.excluded.follows}
            ),
            [
                {
                    "channel_id": channel_id,
                    "hour": hour,
                    "live_seconds": 0,
                    "viewer_seconds": 0,
                    "peak_viewers": 0,
                    "messages": 0,
                    "follows": n,
                }
                for (channel_id, hour), n in follows.items()
            ],
        )
    d0 = h0 // DAY * DAY
    d1 = (h1 - 1) // DAY * DAY + DAY
    days = _table(AnalyticsChannelDay)
    await session.execute(delete(days).where(days.c.day >= d0, days.c.day < d1))
    h = hours.c
    day = (h.hour // DAY * DAY).label("day")
    await session.execute(
        insert(days).from_select(
            [
                "channel_id",
                "day",
                "live_seconds",
                "viewer_seconds",
                "peak_viewers",
                "messages",
                "follows",
            ],
            select(
                h.channel_id,
                day,
                func.sum(h.live_seconds),
                func.sum(h.viewer_seconds),
                func.max(h.peak_viewers),
                func.sum(h.messages),
                func.sum(h.follows),
            )
            .where(h.hour >= d0, h.hour < d1)
            .group_by(h.channel_id, day),
        )
    )
    await session.flush()


async def prune(session: AsyncSession, now: int, raw_days: float, hourly_days: float) -> None:
    """Drop raw rows older than ``raw_days`` of streams whose summary is final (a stream still
    live, or not summed up yet, keeps all of its own), and hours older than ``hourly_days``."""
    raw_cutoff = now - int(raw_days * DAY)
    open_streams = select(AnalyticsStream.stream_id).where(AnalyticsStream.final == false())
    await session.execute(
        delete(AnalyticsSample).where(
            AnalyticsSample.at < raw_cutoff, AnalyticsSample.stream_id.not_in(open_streams)
        )
    )
    await session.execute(
        delete(AnalyticsWatch).where(
            AnalyticsWatch.last_at < raw_cutoff, AnalyticsWatch.stream_id.not_in(open_streams)
        )
    )
    await session.execute(
        delete(AnalyticsChannelHour).where(AnalyticsChannelHour.hour < now - int(hourly_days * DAY))
    )
    await session.flush()


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Marker:
    """Where the title or category changed (a chapter of the broadcast)."""

    offset_seconds: float
    title: str
    category: str | None


@dataclass(frozen=True)
class StreamReport:
    stream_id: int
    channel_id: int
    title: str
    started_at: datetime | None
    ended_at: datetime | None
    live: bool
    figures: StreamFigures
    markers: list[Marker]
    # The polls run during the broadcast (issue 16), in order, with their results.
    polls: list[PollRow] = field(default_factory=list)

    @property
    def average_viewers(self) -> float:
        f = self.figures
        return f.viewer_seconds / f.live_seconds if f.live_seconds else 0.0

    @property
    def average_watch_seconds(self) -> float:
        f = self.figures
        return f.watch_seconds / f.unique_viewers if f.unique_viewers else 0.0


async def stream_report(
    session: AsyncSession, stream_id: int, *, step: int, max_points: int
) -> StreamReport | None:
    """A broadcast's figures: its final summary, or (live, or not summed up yet) computed from
    its raw rows now; zeros for a stream never sampled. None: no such stream."""
    a = AnalyticsStream
    fields = list(StreamFigures.__dataclass_fields__)
    found = (
        await session.execute(
            select(
                Stream.channel_id,
                Stream.title,
                Stream.started_at,
                Stream.ended_at,
                Stream.status,
                a.final,
                *(getattr(a, name) for name in fields),
            )
            .outerjoin(a, a.stream_id == Stream.id)
            .where(Stream.id == stream_id)
        )
    ).one_or_none()
    if found is None:
        return None
    stream = found
    figures: StreamFigures | None = None
    if found.final:  # NULL (never sampled) or false (live, or not summed up yet): raw rows
        figures = StreamFigures(**dict(zip(fields, found[6:], strict=True)))
    else:
        figures = await summarize(session, stream_id, step=step, max_points=max_points)
    chapters = await session.execute(
        select(StreamChapter.offset_seconds, StreamChapter.title, StreamChapter.category_name)
        .where(StreamChapter.stream_id == stream_id)
        .order_by(StreamChapter.offset_seconds, StreamChapter.id)
    )
    return StreamReport(
        stream_id=stream_id,
        channel_id=stream.channel_id,
        title=stream.title,
        started_at=stream.started_at,
        ended_at=stream.ended_at,
        live=stream.status is StreamStatus.LIVE,
        figures=figures or StreamFigures(),
        markers=[Marker(float(o), t, c) for o, t, c in chapters],
        polls=await stream_polls(session, stream_id),
    )


@dataclass(frozen=True)
class Bucket:
    """One point of a channel's curve (an hour or a day)."""

    at: int
    live_seconds: int
    viewer_seconds: int
    peak_viewers: int
    messages: int
    follows: int


@dataclass(frozen=True)
class TopStream:
    stream_id: int
    title: str
    started_at: int
    live_seconds: int
    peak_viewers: int
    viewer_seconds: int
    unique_viewers: int


@dataclass(frozen=True)
class TopClip:
    public_id: str
    title: str
    views: int
    created_at: datetime
    duration_seconds: float | None


@dataclass(frozen=True)
class ChannelReport:
    channel_id: int
    days: int
    start: int  # the first second of the range (a UTC midnight)
    end: int
    live_seconds: int
    viewer_seconds: int
    peak_viewers: int
    messages: int
    follows: int
    streams: int
    bucket_seconds: int  # HOUR or DAY: what each point of ``points`` covers
    points: list[Bucket]
    top_streams: list[TopStream]
    top_clips: list[TopClip]

    @property
    def average_viewers(self) -> float:
        return self.viewer_seconds / self.live_seconds if self.live_seconds else 0.0


def range_start(now: int, days: int) -> int:
    """The first second of a ``days``-day range ending today (UTC days, today included)."""
    return now // DAY * DAY - (days - 1) * DAY


async def channel_report(
    session: AsyncSession,
    channel_id: int,
    *,
    days: int,
    now: int,
    top_streams: int,
    top_clips: int,
) -> ChannelReport:
    """A channel's last ``days`` days: the curve by the hour (7 days or less) or by the day
    and its totals, its most watched streams and most viewed clips."""
    start = range_start(now, days)
    # Three statements: the buckets (their sums are the totals: days are made of hours), the
    # top streams with how many there were (a window count, before the LIMIT), the top clips.
    model: Any = AnalyticsChannelHour if days <= 7 else AnalyticsChannelDay
    key = model.hour if days <= 7 else model.day
    points = [
        Bucket(*row)
        for row in await session.execute(
            select(
                key,
                model.live_seconds,
                model.viewer_seconds,
                model.peak_viewers,
                model.messages,
                model.follows,
            )
            .where(model.channel_id == channel_id, key >= start)
            .order_by(key)
        )
    ]
    a = AnalyticsStream
    rows = (
        await session.execute(
            select(
                a.stream_id,
                Stream.title,
                a.started_at,
                a.live_seconds,
                a.peak_viewers,
                a.viewer_seconds,
                a.unique_viewers,
                func.count().over(),
            )
            .join(Stream, Stream.id == a.stream_id)
            .where(a.channel_id == channel_id, a.started_at >= start)
            .order_by(a.viewer_seconds.desc(), a.stream_id.desc())
            .limit(top_streams)
        )
    ).all()
    clips = [
        TopClip(*row)
        for row in await session.execute(
            select(Clip.public_id, Clip.title, Clip.views, Clip.created_at, Clip.duration_seconds)
            .where(
                Clip.channel_id == channel_id,
                Clip.created_at >= from_epoch(start),
                Clip.status == "ready",
            )
            .order_by(Clip.views.desc(), Clip.id.desc())
            .limit(top_clips)
        )
    ]
    return ChannelReport(
        channel_id=channel_id,
        days=days,
        start=start,
        end=now,
        live_seconds=sum(p.live_seconds for p in points),
        viewer_seconds=sum(p.viewer_seconds for p in points),
        peak_viewers=max((p.peak_viewers for p in points), default=0),
        messages=sum(p.messages for p in points),
        follows=sum(p.follows for p in points),
        streams=int(rows[0][-1]) if rows else 0,
        bucket_seconds=HOUR if days <= 7 else DAY,
        points=points,
        top_streams=[TopStream(*row[:-1]) for row in rows],
        top_clips=clips,
    )


async def sampled_streams(session: AsyncSession, channel_id: int, limit: int) -> list[Any]:
    """The channel's latest sampled broadcasts (id, title, started_at epoch), newest first:
    the dashboard's stream picker."""
    rows = await session.execute(
        select(AnalyticsStream.stream_id, Stream.title, AnalyticsStream.started_at)
        .join(Stream, Stream.id == AnalyticsStream.stream_id)
        .where(AnalyticsStream.channel_id == channel_id)
        .order_by(AnalyticsStream.started_at.desc())
        .limit(limit)
    )
    return list(rows)


__all__ = [
    "HOUR",
    "DAY",
    "Sample",
    "WatchDelta",
    "StreamFigures",
    "StreamReport",
    "ChannelReport",
    "Bucket",
    "TopStream",
    "TopClip",
    "Marker",
    "epoch",
    "from_epoch",
    "window_activity",
    "record_samples",
    "add_watch",
    "summarize",
    "finish_streams",
    "rollup",
    "prune",
    "stream_report",
    "channel_report",
    "range_start",
    "series_step",
    "sampled_streams",
]
