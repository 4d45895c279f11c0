"""The restreaming page in a real headless Chromium: from the dashboard's link, add a custom
destination (this same server's second channel, so no network is needed) and a Twitch one
(disabled) with the form; go live with a real ffmpeg and watch the page, without a reload,
show the destination live with bytes sent; untick Enabled and see it stop, and the relayed
channel end. The key is never on the page (only its last 4 characters); no script error,
nothing loaded from elsewhere, nothing the CSP blocks. Screenshot in test-artifacts/."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.browser.browser_support import ROOT, PageWatch, browser  # noqa: F401
from tests.conftest import make_channel, rtmp_url, running_server, start_ffmpeg

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def artifact(name: str) -> Path:
    directory = Path(os.environ.get("AETHEX_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


async def until(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.1)


async def test_add_destinations_watch_one_go_live_and_disable_it(
    browser,  # noqa: F811 - the fixture, imported by name
    settings_env,
) -> None:
    env = {**settings_env, "AETHEX_RESTREAM__ALLOW_PRIVATE_ADDRESSES": "true"}
    async with running_server(env) as server:
        _, key = await make_channel(server, "studio", "maker")
        _, relay_key = await make_channel(server, "studio-copy", "maker")
        base = f"http://127.0.0.1:{server.http_port}"
        context = await browser.new_context(viewport={"width": 1280, "height": 1000})
        page = await context.new_page()
        watch = PageWatch(page, base)
        await page.goto(f"{base}/auth/login")
        await page.fill("input[name=username]", "maker")
        await page.fill("input[name=password]", "pw-123456789")
        await page.click("button[type=submit]")
        await page.wait_for_url(lambda url: "/auth/login" not in url)

        await page.goto(f"{base}/dashboard")
        await page.click("#channel-studio a[href$='/destinations']")
        await page.wait_for_url(f"{base}/dashboard/channels/studio/destinations")
        form = page.locator("form[data-role=add-form]")
        await form.locator("input[name=name]").fill("Loopback")
        await form.locator("select[name=preset]").select_option("custom")
        await form.locator("input[name=ingest_url]").fill(
            f"rtmp://127.0.0.1:{server.rtmp_port}/live"
        )
        await form.locator("input[name=stream_key]").fill(relay_key)
        await form.locator("button[type=submit]").click()
        loop_item = page.locator("li.destination", has_text="Loopback")
        await loop_item.wait_for()
        assert await loop_item.locator("[data-field=key]").inner_text() == relay_key[-4:]

        await form.locator("input[name=name]").fill("My Twitch")
        await form.locator("select[name=preset]").select_option("twitch")
        assert await form.locator("input[name=ingest_url]").is_hidden()
        await form.locator("input[name=stream_key]").fill("live_000000000_abcdefghijkl")
        await form.locator("input[name=enabled]").uncheck()
        await form.locator("button[type=submit]").click()
        twitch = page.locator("li.destination", has_text="My Twitch")
        await twitch.wait_for()
        assert "rtmp://live.twitch.tv/app" in await twitch.inner_text()

        ffmpeg = await start_ffmpeg(rtmp_url(server, key), seconds=60, size="320x180")
        try:
            state = loop_item.locator("[data-field=state]")
            await until(lambda: _is(state, "live"), "the destination shown live")
            await until(lambda: server.registry.get("studio-copy") is not None, "relayed")
            detail = loop_item.locator("[data-field=detail]")
            await until(lambda: _matches(detail, r"[1-9][0-9.]* kb/s .* [1-9]"), "bitrate shown")
            assert await twitch.locator("[data-field=state]").inner_text() == "stopped"
            await page.screenshot(path=str(artifact("destinations-page.png")), full_page=True)

            copy = server.registry.get("studio-copy")
            assert copy is not None
            await loop_item.locator("[data-action=enabled]").uncheck()
            await until(lambda: copy.ended, "the relayed channel ended", timeout=10)
            await until(lambda: _is(state, "stopped"), "the destination shown stopped")
            content = await page.content()
            assert relay_key not in content
            watch.check()
        finally:
            with contextlib.suppress(ProcessLookupError):
                ffmpeg.kill()
            await ffmpeg.wait()
            await context.close()


async def _is(locator: Any, state: str) -> bool:
    return await locator.get_attribute("data-state") == state


async def _matches(locator: Any, pattern: str) -> bool:
    return re.search(pattern, await locator.inner_text()) is not None
