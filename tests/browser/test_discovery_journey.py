"""A viewer's whole way to a stream, in real Chromium against a real server and a real ffmpeg:
search as you type in the header, open a category from a suggestion, find the channel there,
follow it with the bell on, and when the creator goes live the header's bell count rises on
the open page without a reload; the category page then lists the channel as live."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from sqlalchemy import select

from storage.models import Channel, ChannelFollow
from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.chat_support import auth, base_url, make_chat_channel
from tests.conftest import rtmp_url, start_ffmpeg

pytestmark = [pytest.mark.integration, pytest.mark.browser]


async def _suggestions(page) -> list[str]:
    return await page.eval_on_selector_all(
        "#site-search-list [role=option]", "els => els.map(e => e.textContent.trim())"
    )


async def test_search_category_follow_with_bell_then_go_live(browser, server) -> None:  # noqa: F811
    channel_id, _, token = await make_chat_channel(server, "runner", "speedy")
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        r = await http.patch(
            f"{base}/api/channels/speedy",
            json={"name": "Speedy Runs", "category": "speedrunning", "tags": ["any-percent"]},
            headers=auth(token),
        )
        assert r.status == 200, await r.text()

    context = await browser.new_context(base_url=base)
    try:
        r = await context.request.post(
            "/api/auth/register",
            data={"username": "viewer", "password": "correct horse battery", "email": "v@e.test"},
        )
        assert r.status == 201, await r.text()
        viewer_id = (await r.json())["user"]["id"]
        page = await context.new_page()
        watch = PageWatch(page, base)
        await page.goto("/")

        # Search as you type: a typo still suggests the category; the keyboard opens it.
        box = page.locator("#site-search-q")
        await box.click()
        await page.keyboard.type("speedrunnig")
        await page.wait_for_selector("#site-search-list:not([hidden]) [role=option]")
        options = await _suggestions(page)
        assert "Speedrunning" in options, options
        for _ in range(options.index("Speedrunning") + 1):
            await page.keyboard.press("ArrowDown")
        await page.keyboard.press("Enter")
        await page.wait_for_url("**/categories/speedrunning")
        # Offline: nobody live in the category yet.
        assert await page.locator("#nobody-live").count() == 1

        # The channel by its name, from the header again.
        await box.click()
        await page.keyboard.type("speedy")
        await page.wait_for_selector(
            "#site-search-list:not([hidden]) [role=option][data-url='/streams/speedy']"
        )
        await page.click("#site-search-list [role=option][data-url='/streams/speedy']")
        await page.wait_for_url("**/streams/speedy")

        # Follow: the bell comes on with the follow.
        await page.locator("#follow-button").click()
        await page.wait_for_selector('#follow-bell[aria-pressed="true"]', state="visible")
        async with server.db.session() as db:
            notify = await db.scalar(
                select(ChannelFollow.notify).where(
                    ChannelFollow.user_id == viewer_id, ChannelFollow.channel_id == channel_id
                )
            )
            channel = await db.get(Channel, channel_id)
            assert channel is not None
            key = channel.stream_key
        assert notify is True

        # An open page elsewhere; the creator goes live; the count rises without a reload.
        await page.goto("/categories")
        await page.wait_for_function(
            "() => document.getElementById('nav-bell').dataset.unread === '0'"
        )
        await page.evaluate("window.__sameDocument = true")
        proc = await start_ffmpeg(rtmp_url(server, key), seconds=30)
        try:
            await page.wait_for_selector("#bell-count:not([hidden])", timeout=30_000)
            assert (await page.text_content("#bell-count")) == "1"
            assert await page.evaluate("window.__sameDocument === true")
            await page.screenshot(path=str(screenshot_path("discovery-bell.png")))

            # The category lists the channel as live now (its listing is shared by every
            # visitor for browse.cache_seconds, so a reload may first show the earlier one).
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                await page.goto("/categories/speedrunning")
                if await page.locator("#live-channels [data-slug='speedy']").count():
                    break
                assert asyncio.get_running_loop().time() < deadline, "never listed as live"
                await asyncio.sleep(0.5)
        finally:
            proc.terminate()
            await proc.wait()
        watch.check()
    finally:
        await context.close()
