"""storage.analytics on SQLite and on a real PostgreSQL: rollups equal a recount from the raw
events (samples, follows, messages, viewer sessions), however the rollup runs are cut up and
repeated; stream summaries equal a recount of their stream; the 7/30/90-day reports equal the
sum of the recounted days; pruning keeps what a stream still needs."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from storage import Database, queries
from storage import analytics as an
from storage.analytics_models import (
    AnalyticsChannelDay,
    AnalyticsChannelHour,
    AnalyticsSample,
    AnalyticsStream,
    AnalyticsWatch,
)
from storage.creator_models import Clip, StreamChapter
from storage.models import ChannelFollow, Message, StreamStatus

pytestmark = pytest.mark.integration

# 22:00 UTC: the generated broadcasts cross midnights.
T0 = int(datetime(2026, 3, 1, 22, 0, tzinfo=UTC).timestamp())
STEP = 10


@pytest.fixture
def db(db_on_both: Database) -> Database:
    return db_on_both


def _samples(
    rng: random.Random, stream_id: int, channel_id: int, start: int, n: int
) -> list[an.Sample]:
    out = []
    at = start
    for i in range(n):
        seconds = STEP if i else min(STEP, 7)
        at += seconds + (rng.random() < 0.05)  # now and then a sample a second late
        viewers = rng.randrange(0, 9)
        hi = rng.randrange(0, viewers + 1)
        out.append(
            an.Sample(
                stream_id,
                channel_id,
                at,
                seconds,
                viewers,
                {"720p": hi, "360p": viewers - hi} if viewers else {},
                messages=rng.randrange(0, 6),
                chatters=rng.randrange(0, 3),
                follows=rng.randrange(0, 2),
            )
        )
    return out


async def _world(db: Database, rng: random.Random) -> dict[str, Any]:
    """Three broadcasts of two channels over ~2 days, follows at random times, chat, and
    viewer sessions, all written as the sampler writes them."""
    async with db.session() as s:
        await queries.create_user(s, "owner", "owner@example.org", None)
        fans = [
            await queries.create_user(s, f"fan{i}", f"f{i}@example.org", None) for i in range(30)
        ]
        a = await queries.create_channel(s, "owner", "chan-a")
        b = await queries.create_channel(s, "owner", "chan-b")
        s1 = await queries.start_stream(s, a.id, an.from_epoch(T0), title="first")
        s2 = await queries.start_stream(s, b.id, an.from_epoch(T0 + 1800), title="other")
        await s.commit()
        samples = _samples(rng, s1.id, a.id, T0, 400)  # 1.1 h
        samples += _samples(rng, s2.id, b.id, T0 + 1800, 1200)  # 3.3 h, over midnight
        await an.record_samples(s, samples)
        await queries.end_stream(s, s1.id, an.from_epoch(T0 + 4100), StreamStatus.ARCHIVED)
        s3 = await queries.start_stream(s, a.id, an.from_epoch(T0 + 86400), title="next day")
        later = _samples(rng, s3.id, a.id, T0 + 86400, 600)
        await an.record_samples(s, later)
        samples += later
        follows = []
        for fan in fans:
            for channel in (a, b):
                if rng.random() < 0.7:
                    at = an.from_epoch(T0 - 3600 + rng.randrange(0, 2 * 86400))
                    follows.append((channel.id, at))
                    s.add(ChannelFollow(user_id=fan.id, channel_id=channel.id, created_at=at))
        for i in range(200):
            stream = rng.choice((s1, s2))
            s.add(
                Message(
                    stream_id=stream.id,
                    channel_id=stream.channel_id,
                    user_id=rng.choice(fans).id,
                    content=f"m{i}",
                    created_at=an.from_epoch(T0 + rng.randrange(0, 9000)),
                )
            )
        deltas = []
        for sample in samples:
            for rendition, n in sample.renditions.items():
                for k in range(n):
                    key = f"v{sample.stream_id}-{rendition}-{k}"
                    deltas.append(
                        an.WatchDelta(
                            sample.stream_id, key, rendition, sample.at, sample.at, sample.seconds
                        )
                    )
        # Written in several batches, as the sampler's flushes do.
        for i in range(0, len(deltas), 5000):
            await an.add_watch(s, deltas[i : i + 5000])
        await s.commit()
    return {
        "samples": samples,
        "follows": follows,
        "deltas": deltas,
        "streams": (s1.id, s2.id, s3.id),
        "channels": (a.id, b.id),
        "fans": fans,
    }


def _recount(samples: list[an.Sample], follows: list[tuple[int, datetime]], size: int) -> dict:
    """Buckets of ``size`` seconds per channel, counted straight from the raw events."""
    out: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for s in samples:
        row = out[(s.channel_id, s.at // size * size)]
        row[0] += s.seconds
        row[1] += s.viewers * s.seconds
        row[2] = max(row[2], s.viewers)
        row[3] += s.messages
    for channel_id, at in follows:
        out[(channel_id, an.epoch(at) // size * size)][4] += 1
    return {k: tuple(v) for k, v in out.items()}


async def _rows(db: Database, model: Any, key: str) -> dict:
    async with db.session() as s:
        rows = await s.execute(
            select(
                model.channel_id,
                getattr(model, key),
                model.live_seconds,
                model.viewer_seconds,
                model.peak_viewers,
                model.messages,
                model.follows,
            )
        )
        return {(r[0], r[1]): tuple(r[2:]) for r in rows}


async def test_rollups_equal_a_recount_from_raw_events(db: Database) -> None:
    rng = random.Random(13)
    world = await _world(db, rng)
    samples, follows = world["samples"], world["follows"]
    last = max([s.at for s in samples] + [an.epoch(at) for _, at in follows])
    # Runs cut at random places, some repeated or overlapping, as a restarted server does.
    t = T0 - 7200
    async with db.session() as s:
        while t < last + 3600:
            step = rng.randrange(60, 4 * 3600)
            await an.rollup(s, t - rng.choice((0, 0, 600)), t + step)
            t += step
        await an.rollup(s, T0, T0 + 3600)  # a repeat of a span already rolled up
        await s.commit()
    assert await _rows(db, AnalyticsChannelHour, "hour") == _recount(samples, follows, an.HOUR)
    assert await _rows(db, AnalyticsChannelDay, "day") == _recount(samples, follows, an.DAY)

    # The 7/30/90-day reports are the sums of the recounted days.
    days = _recount(samples, follows, an.DAY)
    a, _b = world["channels"]
    now = last + 60
    for n in (7, 30, 90):
        async with db.session() as s:
            report = await an.channel_report(s, a, days=n, now=now, top_streams=5, top_clips=5)
        mine = [v for (c, d), v in days.items() if c == a and d >= an.range_start(now, n)]
        assert report.live_seconds == sum(v[0] for v in mine)
        assert report.viewer_seconds == sum(v[1] for v in mine)
        assert report.peak_viewers == max(v[2] for v in mine)
        assert report.messages == sum(v[3] for v in mine)
        assert report.follows == sum(v[4] for v in mine)
        assert report.bucket_seconds == (an.HOUR if n == 7 else an.DAY)
        assert sum(p.live_seconds for p in report.points) == report.live_seconds
        assert report.streams == 2
        assert [t.stream_id for t in report.top_streams][0] in world["streams"]


async def test_stream_summary_equals_a_recount_of_the_stream(db: Database) -> None:
    rng = random.Random(7)
    world = await _world(db, rng)
    s1, s2, s3 = world["streams"]
    async with db.session() as s:
        s.add(StreamChapter(stream_id=s1, offset_seconds=0, title="first", category_name="Art"))
        s.add(StreamChapter(stream_id=s1, offset_seconds=600.5, title="second", category_name=None))
        done = await an.finish_streams(s, step=60, max_points=50)
        await s.commit()
    assert done == [s1]  # s2 and s3 are still live
    async with db.session() as s:
        report = await an.stream_report(s, s1, step=60, max_points=50)
        chapters = [
            (float(o), t, c)
            for o, t, c in await s.execute(
                select(
                    StreamChapter.offset_seconds, StreamChapter.title, StreamChapter.category_name
                )
                .where(StreamChapter.stream_id == s1)
                .order_by(StreamChapter.offset_seconds, StreamChapter.id)
            )
        ]
        chatters = await s.scalar(
            select(func.count(Message.user_id.distinct())).where(Message.stream_id == s1)
        )
        messages_live = await an.stream_report(s, s2, step=60, max_points=50)
    assert report is not None and not report.live
    mine = [x for x in world["samples"] if x.stream_id == s1]
    f = report.figures
    assert f.live_seconds == sum(x.seconds for x in mine)
    assert f.viewer_seconds == sum(x.viewers * x.seconds for x in mine)
    assert f.peak_viewers == max(x.viewers for x in mine)
    assert f.messages == sum(x.messages for x in mine)
    assert f.follows == sum(x.follows for x in mine)
    assert f.chatters == chatters
    keys = {d.viewer_key for d in world["deltas"] if d.stream_id == s1}
    assert f.unique_viewers == len(keys)
    # Every counted viewer was credited the sample's seconds: watch time = viewer-seconds.
    assert f.watch_seconds == f.viewer_seconds
    for rendition in ("720p", "360p"):
        per = [d for d in world["deltas"] if d.stream_id == s1 and d.rendition == rendition]
        assert f.renditions[rendition] == {
            "viewers": len({d.viewer_key for d in per}),
            "seconds": sum(d.seconds for d in per),
        }
    assert len(f.series) <= 50
    assert sum(p[3] for p in f.series) == f.messages
    assert max(p[2] for p in f.series) == f.peak_viewers
    assert [(m.offset_seconds, m.title, m.category) for m in report.markers] == chapters
    assert (600.5, "second", None) in chapters
    assert report.average_viewers == pytest.approx(f.viewer_seconds / f.live_seconds)
    assert report.average_watch_seconds == pytest.approx(f.watch_seconds / len(keys))
    # A live stream's figures come from its raw rows on request.
    assert messages_live is not None and messages_live.live
    assert messages_live.figures.live_seconds == sum(
        x.seconds for x in world["samples"] if x.stream_id == s2
    )
    async with db.session() as s:
        saved = await s.get(AnalyticsStream, s1)
        assert saved is not None and saved.final and saved.series == f.series
        assert (await an.stream_report(s, 10**9, step=60, max_points=50)) is None


async def test_window_activity_counts_chat_and_follows_of_live_streams(db: Database) -> None:
    rng = random.Random(3)
    world = await _world(db, rng)
    s1, s2, _s3 = world["streams"]
    a, b = world["channels"]
    since, until = an.from_epoch(T0 + 1000), an.from_epoch(T0 + 5000)
    async with db.session() as s:
        chat, follows = await an.window_activity(s, {s1: a, s2: b}, since, until)
        rows = (
            await s.execute(
                select(Message.stream_id, Message.user_id).where(
                    Message.created_at > since, Message.created_at <= until
                )
            )
        ).all()
    for sid in (s1, s2):
        mine = [u for st, u in rows if st == sid]
        assert chat.get(sid, (0, 0)) == (len(mine), len(set(mine)))
    for cid in (a, b):
        expected = sum(1 for c, at in world["follows"] if c == cid and since < at <= until)
        assert follows.get(cid, 0) == expected


async def test_prune_keeps_what_open_streams_need(db: Database) -> None:
    rng = random.Random(5)
    world = await _world(db, rng)
    s1, s2, _s3 = world["streams"]
    async with db.session() as s:
        await an.rollup(s, T0 - 3600, T0 + 3 * 86400)
        await an.finish_streams(s, step=60, max_points=100)
        s.add(
            Clip(
                channel_id=world["channels"][0],
                stream_id=s1,
                title="c",
                source="vod",
                status="ready",
                start_seconds=0,
                end_seconds=5,
                views=3,
                created_at=an.from_epoch(T0 + 100),
            )
        )
        await s.commit()
        now = T0 + 40 * 86400
        await an.prune(s, now, raw_days=3, hourly_days=30)
        await s.commit()
        left = dict(
            (
                await s.execute(
                    select(AnalyticsSample.stream_id, func.count()).group_by(
                        AnalyticsSample.stream_id
                    )
                )
            ).all()
        )
        watch_left = {
            sid for (sid,) in await s.execute(select(AnalyticsWatch.stream_id).distinct())
        }
        hours = await s.scalar(select(func.count()).select_from(AnalyticsChannelHour))
        days = await s.scalar(select(func.count()).select_from(AnalyticsChannelDay))
        report = await an.stream_report(s, s1, step=60, max_points=100)
        channel = await an.channel_report(
            s, world["channels"][0], days=90, now=now, top_streams=5, top_clips=5
        )
    assert s1 not in left and s1 not in watch_left  # final: its summary is all it needs
    assert s2 in left and s2 in watch_left  # still live: nothing of it goes
    assert hours == 0 and days > 0
    assert report is not None and report.figures.live_seconds > 0  # from the summary
    assert channel.live_seconds > 0
    assert [c.views for c in channel.top_clips] == [3]
