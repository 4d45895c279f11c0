"""The analytics API, page and CSV export on a real server: owner and admin only (401, 403,
404 as the other channel routes answer), bad ranges and stream ids are 400s in the error shape,
and the documents carry what the storage rolled up."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

import aiohttp
import pytest

from storage import analytics as an
from storage import queries
from storage.creator_models import StreamChapter
from storage.models import StreamStatus
from tests.chat_support import auth, base_url, make_chat_channel, make_user

pytestmark = pytest.mark.integration

SLUG = "stats-tv"


async def seed_stream(server: Any, channel_id: int) -> int:
    """A stream that ran for ten minutes an hour ago, sampled and rolled up."""
    now = int(time.time())
    start = now - 3600
    async with server.db.session() as s:
        row = await queries.start_stream(s, channel_id, an.from_epoch(start), title="Seeded run")
        s.add(StreamChapter(stream_id=row.id, offset_seconds=300.0, title="Part two"))
        samples = [
            an.Sample(row.id, channel_id, start + 10 * i, 10, v, {"720p": v - 1, "360p": 1})
            for i, v in enumerate([2, 3, 5, 8, 5, 3] * 10, start=1)
        ]
        await an.record_samples(s, samples)
        await an.add_watch(
            s,
            [an.WatchDelta(row.id, "k1", "720p", start, start + 600, 400)]
            + [an.WatchDelta(row.id, "k2", "360p", start, start + 600, 600)],
        )
        await queries.end_stream(s, row.id, an.from_epoch(start + 600), StreamStatus.ARCHIVED)
        await an.rollup(s, start - 3600, now)
        await an.finish_streams(s, step=60, max_points=360)
        await s.commit()
    return row.id


async def _get(http: aiohttp.ClientSession, url: str, token: str | None = None) -> Any:
    async with http.get(url, headers=auth(token), allow_redirects=False) as resp:
        body = await resp.read()
        return resp.status, resp.headers, body


async def test_analytics_routes_answer_the_owner_and_admins_only(server: Any) -> None:
    channel_id, _owner_id, owner = await make_chat_channel(server, "stats_owner", SLUG)
    _, stranger = await make_user(server, "stranger")
    _, admin = await make_user(server, "boss", admin=True)
    stream_id = await seed_stream(server, channel_id)
    base = base_url(server)
    api = f"{base}/api/channels/{SLUG}/analytics"
    async with aiohttp.ClientSession() as http:
        assert (await _get(http, api))[0] == 401
        status, _, body = await _get(http, api, stranger)
        assert status == 403 and b"forbidden" in body
        assert (await _get(http, f"{base}/api/channels/no-such/analytics", owner))[0] == 404
        status, _, body = await _get(http, f"{api}?range=365d", owner)
        assert status == 400 and b'"error"' in body

        for token in (owner, admin):
            status, headers, body = await _get(http, api, token)
            assert status == 200, body
            assert headers["Cache-Control"] == "no-store"
        doc = json.loads(body)
        assert doc["range"] == "7d" and doc["bucket_seconds"] == 3600
        series = doc["series"]
        assert len(series["t"]) == len(series["average_viewers"]) <= 7 * 24
        assert all(b - a == 3600 for a, b in zip(series["t"], series["t"][1:], strict=False))
        totals = doc["totals"]
        viewer_seconds = sum(v * 10 for v in [2, 3, 5, 8, 5, 3] * 10)
        assert totals["hours_streamed"] == round(600 / 3600, 2)
        assert totals["watch_hours"] == round(viewer_seconds / 3600, 2)
        assert totals["peak_viewers"] == 8 and totals["streams"] == 1
        assert totals["average_viewers"] == round(viewer_seconds / 600, 2)
        assert [s["id"] for s in doc["top_streams"]] == [stream_id]

        status, _, body = await _get(http, f"{api}?range=90d", owner)
        assert status == 200
        month = json.loads(body)
        assert month["bucket_seconds"] == 86400 and len(month["series"]["t"]) == 90

        stream_api = f"{base}/api/streams/{stream_id}/analytics"
        assert (await _get(http, stream_api))[0] == 401
        assert (await _get(http, stream_api, stranger))[0] == 403
        assert (await _get(http, f"{base}/api/streams/999999/analytics", owner))[0] == 404
        status, _, body = await _get(http, stream_api, owner)
        assert status == 200
        one = json.loads(body)
        assert one["summary"]["peak_viewers"] == 8
        assert one["summary"]["unique_viewers"] == 2
        assert one["summary"]["watch_seconds"] == 1000
        assert one["summary"]["average_watch_seconds"] == 500
        assert [r["name"] for r in one["renditions"]] == ["360p", "720p"]
        assert one["renditions"][0]["share"] == 0.6
        assert {"offset_seconds": 300.0, "title": "Part two", "category": None} in one["markers"]
        assert len(one["series"]["offset"]) == 10  # ten minutes, a point a minute

        page = f"{base}/dashboard/analytics"
        status, headers, _ = await _get(http, page)
        assert status == 303 and headers["Location"].startswith("/auth/login")
        status, _, body = await _get(http, page, owner)
        assert status == 200
        html = body.decode()
        for marker in ('id="chart-channel-viewers"', 'id="chart-stream-viewers"', "Seeded run"):
            assert marker in html
        assert "vendor/uPlot.iife.min.js" in html and "https://" not in html.split("<main")[1]
        assert (await _get(http, f"{page}?channel={SLUG}", stranger))[0] == 403
        status, _, body = await _get(http, page, stranger)  # has no channel of their own
        assert status == 200 and b'id="analytics-empty"' in body
        assert (await _get(http, f"{page}?channel={SLUG}", admin))[0] == 200
        assert (await _get(http, f"{page}?channel={SLUG}&stream=abc", owner))[0] == 400
        assert (await _get(http, f"{page}?channel={SLUG}&stream=999999", owner))[0] == 404

        export = f"{page}/export.csv?channel={SLUG}&range=7d"
        assert (await _get(http, export, stranger))[0] == 403
        status, headers, body = await _get(http, export, owner)
        assert status == 200 and headers["Content-Type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(body.decode())))
        assert rows[0][0] == "time" and len(rows) == len(series["t"]) + 1
        assert sum(float(r[4]) for r in rows[1:]) == pytest.approx(viewer_seconds / 3600, abs=0.01)
        status, _, body = await _get(http, f"{export}&stream={stream_id}", owner)
        rows = list(csv.reader(io.StringIO(body.decode())))
        assert status == 200 and rows[0][:2] == ["offset_seconds", "time"] and len(rows) == 11
