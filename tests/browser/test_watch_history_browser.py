"""Watch history end to end in a real headless Chromium: a logged-in viewer plays a stream that
a real ffmpeg publishes (transcoded, served by the real /hls/ routes), the player page's
heartbeats (static/js/watch.js) reach the server, and the viewer's history lists the session
with the seconds played; /dashboard/history shows it and "Clear history" empties it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.accounts import register
from tests.browser.browser_support import PageWatch, browser  # noqa: F401
from tests.conftest import make_channel, make_source, push, rtmp_url, running_server, transcoding

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SLUG = "history-show"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(
        tmp_path_factory.mktemp("history-source") / "480p.flv", size="854x480", seconds=40
    )


async def test_playing_while_logged_in_fills_the_history(
    browser,  # noqa: F811
    settings_env: dict[str, str],
    source: Path,
) -> None:
    env = {
        **transcoding(settings_env),
        "AETHEX_HISTORY__HEARTBEAT_INTERVAL": "5",
        "AETHEX_HISTORY__SESSION_GAP": "30",
        "AETHEX_HISTORY__FLUSH_INTERVAL": "0.5",
    }
    async with running_server(env) as server:
        _, key = await make_channel(server, SLUG, "host")
        base = f"http://127.0.0.1:{server.http_port}"
        publisher = await push(source, rtmp_url(server, key))
        try:
            async with await register(base, "viewer") as api:
                cookie = next(c for c in api.cookie_jar if c.key == "aethex_session")
                context = await browser.new_context()
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

                async def history() -> list[dict]:
                    async with api.get(f"{base}/api/me/history") as r:
                        assert r.status == 200
                        return (await r.json())["entries"]

                # The first heartbeat opens the session, the next ones add what was played.
                deadline = time.monotonic() + 60
                entries = await history()
                while not (entries and entries[0]["watched_seconds"] >= 5):
                    assert time.monotonic() < deadline, f"no history after a minute: {entries}"
                    await asyncio.sleep(0.5)
                    entries = await history()
                assert len(entries) == 1
                assert entries[0]["channel"]["slug"] == SLUG
                assert entries[0]["stream_id"] is not None

                await page.goto(f"{base}/dashboard/history")
                row = page.locator("#history-table tbody tr")
                assert await row.count() == 1
                assert SLUG in await row.first.inner_text()
                await page.locator("#history-clear button").click()
                await page.wait_for_selector("#history-empty")
                watch.check()
                await context.close()
        finally:
            if publisher.returncode is None:
                publisher.terminate()
            await publisher.wait()
