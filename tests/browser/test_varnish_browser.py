"""hls.js in Chromium plays a live stream through Varnish (issue 15, test 2): the watch page is
loaded through a real varnishd running config/varnish/aethex.vcl, so the page, the playlists,
the parts and the viewer beacon all cross the cache. The player plays; the origin served the
media to the cache (its cache-fill counter), not to the browser; and the origin counts the
browser as one viewer by its beacon, under the session id the page made up.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.conftest import make_channel, make_source, push, rtmp_url, running_server, transcoding
from tests.varnish_server import VarnishServer
from webapp.hls import HLS_KEY

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SLUG = "cached-live"
LADDER = [
    {"name": "180p", "height": 180, "fps": 30, "video_kbps": 300},
    {"name": "144p", "height": 144, "fps": 30, "video_kbps": 150},
]


def fills(server, kind: str) -> float:
    for metric in server.metrics.registry.collect():
        if metric.name == "aethex_hls_cache_fills":
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels["kind"] == kind:
                    return float(sample.value)
    return 0.0


async def test_hls_js_plays_through_varnish_and_is_counted_by_its_beacon(
    browser,  # noqa: F811 - the fixture, imported by name
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    source = make_source(tmp_path / "src.flv", size="320x180", seconds=40, bitrate="300k")
    env = transcoding(settings_env)
    env.update(
        {
            "AETHEX_TRANSCODE__LADDER": json.dumps(LADDER),
            "AETHEX_HLS__SEGMENT_DURATION": "1",
            "AETHEX_HTTP__TRUST_FORWARDED_FOR": "true",
            "AETHEX_HLS__VIEWER_TIMEOUT": "6",
            "AETHEX_HLS__VIEWER_UPDATE_INTERVAL": "0.5",
            "AETHEX_HLS__VIEWER_BEACON_INTERVAL": "1",
        }
    )
    async with running_server(env) as server:
        varnish = VarnishServer(server.http_port, tmp_path / "varnish")
        await asyncio.to_thread(varnish.start)
        _, key = await make_channel(server, SLUG, "cachy")
        proc = await push(source, rtmp_url(server, key))
        context = await browser.new_context(viewport={"width": 1024, "height": 700})
        try:
            page = await context.new_page()
            watch = PageWatch(page, varnish.base)
            deadline = time.monotonic() + 30
            while server.broadcasts.edges.get(SLUG) is None:
                assert time.monotonic() < deadline, "the stream did not start"
                await asyncio.sleep(0.2)
            await page.goto(f"{varnish.base}/streams/{SLUG}")
            await page.wait_for_function(
                "() => window.aethexPlayer.hls && window.aethexPlayer.video.currentTime > 2",
                timeout=45_000,
                polling=200,
            )
            t = await page.evaluate("() => window.aethexPlayer.video.currentTime")
            await page.wait_for_function(
                f"() => window.aethexPlayer.video.currentTime > {t} + 1.5",
                timeout=20_000,
                polling=200,
            )
            await page.screenshot(path=str(screenshot_path("varnish-watch-playing.png")))
            session = await page.evaluate("() => new URL(window.aethexPlayer.hls.url).search")
            assert session.startswith("?session=")
            session = session.removeprefix("?session=")

            # The media came through the cache: the origin answered Varnish's fills.
            assert fills(server, "part") > 0 and fills(server, "master") > 0

            # One viewer at the origin, under the page's own session (its beacon).
            deadline = time.monotonic() + 20
            while True:
                table = server._runner.app[HLS_KEY].viewers._tables.get(SLUG)
                count = server.metrics.sample("aethex_viewers", channel=SLUG)
                if table is not None and session in table.sessions and count == 1:
                    break
                assert time.monotonic() < deadline, (count, table and list(table.sessions))
                await asyncio.sleep(0.2)
            # The stream's URLs stop answering (as when it moved to another origin with a new
            # token): a 404 makes the player load the master again, not retry the dead URLs.
            await page.evaluate("() => { window.__old = window.aethexPlayer.hls; }")

            async def not_found(route) -> None:
                await route.fulfill(status=404, body="Not Found")

            await page.route("**/index.m3u8*", not_found)
            try:
                await page.wait_for_function(
                    "() => window.aethexPlayer.hls !== window.__old",
                    timeout=30_000,
                    polling=200,
                )
            finally:
                await page.unroute("**/index.m3u8*", not_found)
            t = await page.evaluate("() => window.aethexPlayer.video.currentTime")
            await page.wait_for_function(
                f"() => window.aethexPlayer.hls && window.aethexPlayer.video.currentTime > {t} + 1",
                timeout=30_000,
                polling=200,
            )
            watch.check()
        finally:
            await context.close()
            if proc.returncode is None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 15)
            await asyncio.to_thread(varnish.stop)
