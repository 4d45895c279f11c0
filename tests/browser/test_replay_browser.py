"""The video page's chat replay, chapters and scrubbing previews in a real headless Chromium.

A real ffmpeg publishes a short stream into a real server that transcodes and records it; the
owner changes the title while it is live (a chapter). The stream's chat is written at known
offsets. On /videos/{id} the chat replay shows exactly the messages sent up to the playback
position as the video plays (a message made to inject markup shows as text), a seek back or
forward clears the list and shows the messages up to the new position, the chapter list and its
marker seek, and hovering or dragging on the timeline bar shows the sprite tile of that moment
(screenshots kept under test-artifacts/).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from storage.models import Message, Stream, StreamStatus
from tests.accounts import csrf_of, register, user_of
from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.conftest import make_channel, rtmp_url, running_server, start_ffmpeg, transcoding

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SECONDS = 12
XSS = '<img src=x onerror=alert("chat")> & friends'
# Offsets of the chat messages (seconds into the stream); the one at 5.5 is deleted.
OFFSETS = [0.5 + k for k in range(SECONDS - 1)]
DELETED = 5.5


async def until(check: Any, what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def latest(server: Any) -> Stream | None:
    async with server.db.session() as db:
        return (
            await db.execute(select(Stream).order_by(Stream.id.desc()).limit(1))
        ).scalar_one_or_none()


# The messages the list shows, and whether they are exactly those up to the playback position.
SHOWN = """() => Array.from(document.querySelectorAll('#chat-replay-list li'))
  .map(li => parseFloat(li.dataset.offset))"""
IN_SYNC = """(expected) => {
  const video = document.getElementById('vod-video');
  const t = video.currentTime;
  const shown = Array.from(document.querySelectorAll('#chat-replay-list li'))
    .map(li => parseFloat(li.dataset.offset));
  const want = expected.filter(o => o <= t);
  return video.paused && !video.seeking && shown.length === want.length &&
    shown.every((o, i) => Math.abs(o - want[i]) < 0.002);
}"""


async def test_chat_replay_follows_playback_and_the_timeline_previews(
    settings_env: dict[str, str],
    browser: Any,  # noqa: F811 - the fixture, imported by name
) -> None:
    env = {**transcoding(settings_env), "AETHEX_REPLAY__PREVIEW_INTERVAL": "1"}
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        owner = await register(base, "streamer")
        try:
            channel_id, key = await make_channel(server, "replay-live", "streamer")
            author = await user_of(owner, base)
            proc = await start_ffmpeg(rtmp_url(server, key), seconds=SECONDS, size="320x180")

            async def live() -> Stream | None:
                row = await latest(server)
                return row if row and row.status is StreamStatus.LIVE else None

            row = await until(live, "the stream to go live", 30)
            started = row.started_at

            async def past(seconds: float) -> bool:
                return (datetime.now(UTC) - started).total_seconds() >= seconds

            await until(lambda: past(5.0), "5 s into the stream")
            async with owner.patch(
                f"{base}/api/streams/{row.id}",
                json={"title": "The second half"},
                headers={"X-CSRF-Token": await csrf_of(owner, base)},
            ) as resp:
                assert resp.status == 200, await resp.text()
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()

            async def archived() -> Stream | None:
                got = await latest(server)
                return got if got and got.status is StreamStatus.ARCHIVED else None

            row = await until(archived, "the stream to be archived")
            async with server.db.session() as db:
                for offset in OFFSETS:
                    at = started + timedelta(seconds=offset)
                    db.add(
                        Message(
                            stream_id=row.id,
                            channel_id=channel_id,
                            user_id=author["id"],
                            content=XSS if offset == 2.5 else f"said at {offset}",
                            created_at=at,
                            deleted_at=at + timedelta(seconds=1) if offset == DELETED else None,
                        )
                    )
                await db.commit()
            expected = [o for o in OFFSETS if o != DELETED]

            async with aiohttp.ClientSession() as anon:

                async def previews() -> bool:
                    url = f"{base}/videos/{row.id}/previews/previews.vtt"
                    async with anon.get(url) as resp:
                        return resp.status == 200

                await until(previews, "the scrubbing previews")

            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            page = await context.new_page()
            watch = PageWatch(page, base)
            await page.goto(f"{base}/videos/{row.id}")
            video = page.locator("#vod-video")
            await page.wait_for_function(
                "() => document.getElementById('video-chapters').dataset.chapters === '2'"
                " && +document.getElementById('video-chapters').dataset.previews > 0"
            )

            # Play (muted, as autoplay allows) to past 4 s, pause: exactly the messages up to
            # the position are shown, in order; the deleted one never.
            await video.evaluate("v => { v.muted = true; return v.play(); }")
            await page.wait_for_function(
                "() => document.getElementById('vod-video').currentTime >= 4", timeout=30_000
            )
            await video.evaluate("v => v.pause()")
            await page.wait_for_function(IN_SYNC, arg=expected, timeout=10_000)
            shown = await page.evaluate(SHOWN)
            assert shown[:4] == [0.5, 1.5, 2.5, 3.5]
            text = page.locator("#chat-replay-list li", has_text="onerror")
            assert await text.count() == 1
            assert XSS in (await text.inner_text())
            assert await page.locator("#chat-replay-list img").count() == 0

            # Seek forward past the deleted message, then back: each time the list is exactly
            # the messages up to the new position.
            for target in (9.2, 1.7, 6.0):
                await video.evaluate(f"v => {{ v.currentTime = {target}; }}")
                await page.wait_for_function(IN_SYNC, arg=expected, timeout=10_000)
                shown = await page.evaluate(SHOWN)
                assert shown == [o for o in expected if o <= target + 0.25], target
                assert DELETED not in shown
            # Playing on from 6 s appends the next messages in order.
            await video.evaluate("v => v.play()")
            await page.wait_for_function(
                "() => document.getElementById('vod-video').currentTime >= 8.7", timeout=30_000
            )
            await video.evaluate("v => v.pause()")
            await page.wait_for_function(IN_SYNC, arg=expected, timeout=10_000)
            await page.screenshot(path=screenshot_path("replay_chat_in_sync.png"))

            # Chapters: listed under the player, a marker on the bar; a click seeks there.
            chapters = page.locator("#chapter-list button")
            assert await chapters.count() == 2
            assert "The second half" in await chapters.nth(1).inner_text()
            assert await page.locator(".timeline-marker").count() == 1
            offset = float(await chapters.nth(1).get_attribute("data-offset") or "nan")
            assert 4.5 <= offset <= 7.0
            await chapters.nth(1).click()
            await page.wait_for_function(
                f"() => Math.abs(document.getElementById('vod-video').currentTime - {offset}) < 0.3"
            )

            # Hovering the bar shows the sprite tile of that moment.
            bar = page.locator("#timeline")
            box = await bar.bounding_box()
            assert box is not None
            duration = float(
                await page.evaluate("() => document.getElementById('vod-video').duration")
            )
            y = box["y"] + box["height"] / 2
            await page.mouse.move(box["x"] + box["width"] * 0.5, y)
            thumb = page.locator("#timeline-thumb")
            await thumb.wait_for(state="visible")
            image = await thumb.evaluate("t => getComputedStyle(t).backgroundImage")
            assert f"/videos/{row.id}/previews/sprite-0.jpg" in image
            start = float(await thumb.get_attribute("data-start") or "nan")
            assert start <= duration * 0.5 < start + 1.0 + 1e-3
            assert await page.locator("#timeline-preview").is_visible()
            await page.screenshot(path=screenshot_path("replay_preview_hover.png"))

            # Dragging: the preview follows the pointer; letting go seeks there.
            await page.mouse.move(box["x"] + box["width"] * 0.2, y)
            await page.mouse.down()
            await page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=5)
            at = float(
                await page.evaluate(
                    "() => document.getElementById('video-chapters').dataset.previewAt"
                )
            )
            assert at == pytest.approx(duration * 0.7, abs=0.2)
            start = float(await thumb.get_attribute("data-start") or "nan")
            assert start <= at < start + 1.0 + 1e-3
            await page.mouse.up()
            await page.wait_for_function(
                f"() => Math.abs(document.getElementById('vod-video').currentTime - {at}) < 0.3"
            )
            await page.mouse.move(0, 0)
            await page.locator("#timeline-preview").wait_for(state="hidden")
            watch.check()
            await context.close()
        finally:
            await owner.close()
