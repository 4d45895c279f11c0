"""Chapters and scrubbing previews of a real broadcast (issue 13).

A real ffmpeg publishes a short 320x180 stream over RTMP into a real server that transcodes
and records it. While it is live, the owner changes the title and then the category through
the JSON API (as the dashboard does): each change becomes a chapter at its offset from the
start, the first chapter being the stream's start at 0, and changes that a viewer would not see
(tags, the same title again) make none. When the stream is archived the server makes scrubbing
previews beside the recording: the WebVTT index's cues run from 0 to the end without a gap,
each naming a tile inside its sprite, and both are served under the video's address with the
video's visibility.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from PIL import Image
from sqlalchemy import select

from storage import categories
from storage.models import Stream, StreamStatus
from tests.accounts import csrf_of, register
from tests.conftest import make_channel, rtmp_url, running_server, start_ffmpeg, transcoding

pytestmark = pytest.mark.integration


async def until(check: Any, what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def latest_stream(server: Any) -> Stream | None:
    async with server.db.session() as db:
        return (
            await db.execute(select(Stream).order_by(Stream.id.desc()).limit(1))
        ).scalar_one_or_none()


def cue_list(text: str) -> list[tuple[float, float, str, int, int, int, int]]:
    def seconds(stamp: str) -> float:
        h, m, s = stamp.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    found = re.findall(r"(\S+) --> (\S+)\n(sprite-\d+\.jpg)#xywh=(\d+),(\d+),(\d+),(\d+)", text)
    return [
        (seconds(a), seconds(b), name, int(x), int(y), int(w), int(h))
        for a, b, name, x, y, w, h in found
    ]


async def test_title_and_category_changes_become_chapters_and_previews_are_made(
    settings_env: dict[str, str],
) -> None:
    env = {**transcoding(settings_env), "AETHEX_REPLAY__PREVIEW_INTERVAL": "1"}
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        admin = await register(base, "boss")
        owner = await register(base, "streamer")
        try:
            _, key = await make_channel(server, "chapters-tv", "streamer")
            async with server.db.session() as db:
                await categories.create_category(db, {"name": "Chess"})
                await db.commit()
            proc = await start_ffmpeg(rtmp_url(server, key), seconds=9, size="320x180")

            async def live() -> Stream | None:
                row = await latest_stream(server)
                return row if row is not None and row.status is StreamStatus.LIVE else None

            row = await until(live, "the stream to go live", 30)
            started = row.started_at
            csrf = await csrf_of(owner, base)

            async def patch(body: dict) -> tuple[float, float]:
                before = (datetime.now(UTC) - started).total_seconds()
                async with owner.patch(
                    f"{base}/api/streams/{row.id}", json=body, headers={"X-CSRF-Token": csrf}
                ) as resp:
                    assert resp.status == 200, await resp.text()
                return before, (datetime.now(UTC) - started).total_seconds()

            async def past(seconds: float) -> bool:
                return (datetime.now(UTC) - started).total_seconds() >= seconds

            await until(lambda: past(2.0), "2 s into the stream")
            title_at = await patch({"title": "Second part"})
            await patch({"title": "Second part", "tags": ["speedrun"]})  # nothing seen changes
            # Two changes within a second of each other make one chapter (the last wins): the
            # category changes over a second after the title change was answered (a slow
            # answer on a busy machine once put them 0.85 s apart).
            later = max(4.0, title_at[1] + 1.5)
            await until(lambda: past(later), "well after the title change")
            category_at = await patch({"category": "Chess"})

            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()

            async def archived() -> Stream | None:
                got = await latest_stream(server)
                return got if got is not None and got.status is StreamStatus.ARCHIVED else None

            row = await until(archived, "the stream to be archived")
            assert row.vod_duration_seconds and row.vod_duration_seconds > 5

            # Chapters: the start, the title change, the category change, at their offsets.
            async with aiohttp.ClientSession() as anon:
                async with anon.get(f"{base}/api/videos/{row.id}/chapters") as resp:
                    assert resp.status == 200, await resp.text()
                    chapters = (await resp.json())["chapters"]
            assert [(c["title"], c["category"] and c["category"]["name"]) for c in chapters] == [
                ("chapters-tv", None),
                ("Second part", None),
                ("Second part", "Chess"),
            ]
            assert chapters[0]["offset"] == 0.0
            for chapter, (low, high) in zip(chapters[1:], (title_at, category_at), strict=True):
                assert low - 0.01 <= chapter["offset"] <= high + 0.01, (chapter, low, high)

            # Scrubbing previews beside the recording, under the video's address.
            vtt_url = f"{base}/videos/{row.id}/previews/previews.vtt"

            async def vtt() -> str | None:
                async with anon_session.get(vtt_url) as resp:
                    return await resp.text() if resp.status == 200 else None

            async with aiohttp.ClientSession() as anon_session:
                text = await until(vtt, "the scrubbing previews")
                cues = cue_list(text)
                assert text.startswith("WEBVTT")
                assert cues[0][0] == 0.0
                assert cues[-1][1] == pytest.approx(row.vod_duration_seconds, abs=0.01)
                for a, b in zip(cues, cues[1:], strict=False):
                    assert b[0] == pytest.approx(a[1], abs=0.001)
                assert len(cues) == pytest.approx(row.vod_duration_seconds, abs=1)
                sprites: dict[str, Image.Image] = {}
                for name in sorted({c[2] for c in cues}):
                    async with anon_session.get(f"{base}/videos/{row.id}/previews/{name}") as resp:
                        assert resp.status == 200
                        assert resp.headers["Content-Type"] == "image/jpeg"
                        sprites[name] = Image.open(io.BytesIO(await resp.read()))
                for _, _, name, x, y, w, h in cues:
                    assert (w, h) == (160, 90)
                    assert x + w <= sprites[name].width and y + h <= sprites[name].height
                # Only the names the previews use reach the disk.
                for bad in ("..%2Fmaster.m3u8", "sprite-x.jpg", "index.m3u8", "sprite-999.jpg"):
                    async with anon_session.get(f"{base}/videos/{row.id}/previews/{bad}") as r:
                        assert r.status == 404, bad

                # A private video's previews are its owner's and the admins'.
                async with server.db.session() as db:
                    stored = await db.get(Stream, row.id)
                    assert stored is not None
                    stored.visibility = "private"
                    await db.commit()
                for who, expected in ((anon_session, 404), (owner, 200), (admin, 200)):
                    for path in ("previews.vtt", "sprite-0.jpg"):
                        async with who.get(f"{base}/videos/{row.id}/previews/{path}") as resp:
                            assert resp.status == expected, (path, expected)
                            if expected == 200:
                                assert resp.headers["Cache-Control"].startswith("private")
        finally:
            await admin.close()
            await owner.close()
