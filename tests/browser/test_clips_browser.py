"""Clips in a real headless Chromium (issue 13): a logged-in viewer watches a stream a real
ffmpeg publishes, presses Clip, trims the draft in the editor, publishes, lands on the clip
page once it is cut and plays it; the channel page then lists it among its top clips.
Screenshots of the editor and the playing clip go to test-artifacts/."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.accounts import register
from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.conftest import make_channel, make_source, push, rtmp_url, running_server, transcoding

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SLUG = "clip-show"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(
        tmp_path_factory.mktemp("clip-source") / "src.flv", size="640x360", seconds=45
    )


async def test_clip_a_live_stream_trim_publish_and_play(
    browser,  # noqa: F811
    settings_env: dict[str, str],
    source: Path,
) -> None:
    env = {
        **transcoding(settings_env),
        "AETHEX_RECORDING__FSYNC": "false",
        "AETHEX_CLIPS__LIVE_SECONDS": "8",
        "AETHEX_CLIPS__DVR_SECONDS": "20",
    }
    async with running_server(env) as server:
        _, key = await make_channel(server, SLUG, "host")
        base = f"http://127.0.0.1:{server.http_port}"
        publisher = await push(source, rtmp_url(server, key))
        try:
            async with await register(base, "clipper") as api:
                cookie = next(c for c in api.cookie_jar if c.key == "aethex_session")
                context = await browser.new_context(viewport={"width": 1280, "height": 900})
                await context.add_cookies(
                    [{"name": "aethex_session", "value": cookie.value, "url": base}]
                )
                page = await context.new_page()
                watch = PageWatch(page, base)
                await page.goto(f"{base}/streams/{SLUG}")
                await page.wait_for_function(
                    "() => window.aethexPlayer && window.aethexPlayer.video.currentTime > 1",
                    timeout=60_000,
                    polling=250,
                )
                # Enough of the stream on disk for the whole capture.
                deadline = time.monotonic() + 60
                while True:
                    edge = server.broadcasts.edges.get(SLUG)
                    if edge is not None and any(sum(s.duration for s in r.dvr) >= 8 for r in edge):
                        break
                    assert time.monotonic() < deadline, "the DVR buffer never held 8 s"
                    await asyncio.sleep(0.25)

                button = page.locator("#clip-button")
                await button.wait_for(state="visible")
                await button.click()
                await page.wait_for_url("**/clips/*/edit", timeout=30_000)
                editor = page.locator("#clip-editor")
                lo = float(await editor.get_attribute("data-start") or "nan")
                hi = float(await editor.get_attribute("data-end") or "nan")
                assert hi - lo >= 7.9
                # The draft plays in the editor.
                await page.wait_for_function(
                    "() => document.getElementById('clip-video').readyState >= 2",
                    timeout=30_000,
                    polling=250,
                )
                await page.fill("#clip-start", f"{lo + 1:.2f}")
                await page.fill("#clip-end", f"{lo + 4:.2f}")
                await page.fill("#clip-title-input", "What a play")
                assert "3.00 s" in await page.locator("#clip-length").inner_text()
                await page.screenshot(path=str(screenshot_path("clip-editor.png")))
                await page.locator("#clip-publish").click()

                # The clip page: being cut, then (reloaded by itself) the player.
                await page.wait_for_url("**/clips/*", timeout=30_000)
                await page.wait_for_selector("#clip-video", timeout=120_000)
                assert await page.locator("#clip-title").inner_text() == "What a play"
                og_video = page.locator('meta[property="og:video"]')
                assert (await og_video.get_attribute("content") or "").endswith("/clip.mp4")
                assert await page.locator('meta[property="og:image"]').count() == 1
                await page.evaluate(
                    "() => { const v = document.getElementById('clip-video');"
                    " v.muted = true; return v.play(); }"
                )
                await page.wait_for_function(
                    "() => document.getElementById('clip-video').currentTime > 1",
                    timeout=30_000,
                    polling=250,
                )
                duration = await page.evaluate(
                    "() => document.getElementById('clip-video').duration"
                )
                assert abs(duration - 3.0) < 0.1, duration
                await page.screenshot(path=str(screenshot_path("clip-page.png")))
                clip_url = page.url

                # The channel page lists it among its top clips.
                await page.goto(f"{base}/streams/{SLUG}")
                link = page.locator("#clip-list a", has_text="What a play")
                await link.wait_for(timeout=30_000)
                assert clip_url.endswith(await link.get_attribute("href") or "-")
                watch.check()
                await context.close()
        finally:
            if publisher.returncode is None:
                publisher.terminate()
            await publisher.wait()
