"""The bell in real Chromium: follow with the bell on (and off and on again) on the viewer page,
then the creator goes live with ffmpeg and the header's count rises on an open page without a
reload; the bell leads to the list."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from storage.models import Channel, ChannelFollow
from tests.browser.browser_support import PageWatch, browser  # noqa: F401
from tests.chat_support import base_url, make_chat_channel
from tests.conftest import rtmp_url, start_ffmpeg

pytestmark = [pytest.mark.integration, pytest.mark.browser]


async def _bell(server, user_id: int, channel_id: int) -> bool | None:
    async with server.db.session() as db:
        return await db.scalar(
            select(ChannelFollow.notify).where(
                ChannelFollow.user_id == user_id, ChannelFollow.channel_id == channel_id
            )
        )


async def test_follow_with_the_bell_and_the_count_rises_without_a_reload(browser, server) -> None:  # noqa: F811
    channel_id, _, _ = await make_chat_channel(server, "host", "show")
    base = base_url(server)
    context = await browser.new_context(base_url=base)
    try:
        r = await context.request.post(
            "/api/auth/register",
            data={"username": "fan", "password": "correct horse battery", "email": "f@e.test"},
        )
        assert r.status == 201, await r.text()
        fan_id = (await r.json())["user"]["id"]
        page = await context.new_page()
        watch = PageWatch(page, base)
        await page.goto("/streams/show")
        bell = page.locator("#follow-bell")
        assert await bell.is_hidden()  # no follow, no bell
        await page.locator("#follow-button").click()
        await page.wait_for_selector('#follow-bell[aria-pressed="true"]', state="visible")
        assert await _bell(server, fan_id, channel_id) is True
        await bell.click()
        await page.wait_for_selector('#follow-bell[aria-pressed="false"]')
        assert await _bell(server, fan_id, channel_id) is False
        await bell.focus()
        await page.keyboard.press("Enter")
        await page.wait_for_selector('#follow-bell[aria-pressed="true"]')
        assert await _bell(server, fan_id, channel_id) is True
        await page.reload()  # the page asks the server for the bell's state
        await page.wait_for_selector('#follow-bell[aria-pressed="true"]', state="visible")
        watch.check()

        # An open page elsewhere on the site; the header's bell starts at nothing unread.
        await page.goto("/notifications")
        watch = PageWatch(page, base)
        await page.wait_for_function(
            "() => document.getElementById('nav-bell').dataset.unread === '0'"
        )
        assert await page.is_hidden("#bell-count")
        await page.evaluate("window.__sameDocument = true")

        async with server.db.session() as db:
            channel = await db.get(Channel, channel_id)
            assert channel is not None
            key = channel.stream_key
        proc = await start_ffmpeg(rtmp_url(server, key), seconds=30)
        try:
            await page.wait_for_selector("#bell-count:not([hidden])", timeout=30_000)
            assert (await page.text_content("#bell-count")) == "1"
            assert await page.get_attribute("#nav-bell", "aria-label") == "Notifications, 1 unread"
            assert await page.evaluate("window.__sameDocument === true")  # no reload
        finally:
            proc.terminate()
            await proc.wait()
        await page.click("#nav-bell")
        await page.wait_for_selector(".notification-unread a[href='/streams/show']")
        await page.click("#mark-all-read")
        await page.wait_for_selector("#bell-count", state="hidden")
        watch.check()
    finally:
        await context.close()
