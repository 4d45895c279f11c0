"""Community channels in real Chromium (issue 16): the owner opens, renames, moves and deletes
topics from the dashboard; a viewer comes from the channel's offline page through its
Community link; a message posted on one page appears on another without a reload (text only,
never HTML) with the channel's emotes as images; a message in another topic raises that
topic's unread marker and the channel page's dot, and opening the topic clears the marker."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import aiohttp
import pytest
from chat_support import auth, make_chat_channel, make_user
from PIL import Image

from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.conftest import running_server

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SLUG = "comm-page"
XSS = '<img src=x onerror="alert(1)"><b>bold</b>'


async def _logged_in(browser, server, base: str, username: str, user_id: int = 0):  # noqa: F811
    """A browser context with a login session made in storage (no password to hash: the
    sign-up's slow hashing is not what this test is about)."""
    from storage.accounts import create_login_session

    if not user_id:
        user_id, _ = await make_user(server, username)
    async with server.db.session() as s:
        token = await create_login_session(s, user_id, datetime.now(UTC), 3600)
        await s.commit()
    context = await browser.new_context(base_url=base)
    await context.add_cookies([{"name": "aethex_session", "value": token, "url": base}])
    return context, await context.new_page()


async def _ready(page) -> None:
    await page.wait_for_selector("#community[data-loaded='true'][data-connected='true']")


async def test_community_pages_live_and_unread(browser, settings_env) -> None:  # noqa: F811
    # alice posts four messages in a few seconds: the default rate limit (3 per 2 s) would
    # refuse the fourth on a fast machine and let it through on a slow one
    env = {**settings_env, "AETHEX_CHAT__RATE_LIMIT_MESSAGES": "50"}
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        _, owner_id, owner_token = await make_chat_channel(server, "streamer", SLUG)

        # the owner opens topics from the dashboard: add three, rename one, move it, delete it
        ctx_o, owner = await _logged_in(browser, server, base, "streamer", owner_id)
        owner_errors: list[str] = []  # not a PageWatch: this page answers a confirm() itself
        owner.on("pageerror", lambda exc: owner_errors.append(str(exc)))
        await owner.goto("/dashboard")
        await owner.click(f"#channel-{SLUG} a[href$='/community']")
        await owner.wait_for_url(f"**/dashboard/channels/{SLUG}/community")
        items = owner.locator(".community-manage-item")
        for n, name in enumerate(("general", "clips", "temp"), start=1):
            await owner.fill("[data-role='add-form'] input[name='name']", name)
            await owner.click("[data-role='add-form'] button[type='submit']")
            await items.nth(n - 1).wait_for()  # the page reloads with the new list
        temp = owner.locator(".community-manage-item[data-topic='temp']")
        await temp.locator("[data-role='rename']").fill("trash")
        await temp.locator("[data-action='rename']").click()
        trash = owner.locator(".community-manage-item[data-topic='trash']")
        await trash.wait_for()
        await trash.locator("[data-action='up']").click()
        await owner.locator(".community-manage-item:nth-child(2)[data-topic='trash']").wait_for()
        owner.once("dialog", lambda dialog: dialog.accept())
        await owner.locator(
            ".community-manage-item[data-topic='trash'] [data-action='delete']"
        ).click()
        await owner.locator(".community-manage-item:nth-child(2)[data-topic='clips']").wait_for()
        names = await items.evaluate_all("els => els.map(e => e.dataset.topic)")
        assert names == ["general", "clips"]

        async with aiohttp.ClientSession(base, headers=auth(owner_token)) as http:
            # an emote of the channel: community messages render it like the chat does
            picture = io.BytesIO()
            Image.new("RGBA", (32, 32), (200, 30, 30, 255)).save(picture, "PNG")
            upload = aiohttp.FormData()
            upload.add_field("code", "PogCom", content_type="text/plain")
            upload.add_field("file", picture.getvalue(), filename="e.png")
            async with http.post(f"/api/channels/{SLUG}/emotes", data=upload) as r:
                assert r.status == 201, await r.text()
        ctx_a, alice = await _logged_in(browser, server, base, "alice")
        ctx_b, bob = await _logged_in(browser, server, base, "bob")
        watch_a, watch_b = PageWatch(alice, base), PageWatch(bob, base)

        # bob reaches the community from the (offline) channel page
        await bob.goto(f"/streams/{SLUG}")
        await bob.click("#community-link")
        await bob.wait_for_url(f"**/streams/{SLUG}/community/general")
        await _ready(bob)
        await alice.goto(f"/streams/{SLUG}/community/general")
        await _ready(alice)

        # posted on alice's page, shown on bob's without a reload, as text
        await alice.fill("#community-input", "hello from alice")
        await alice.press("#community-input", "Enter")
        await bob.locator(".chat-message", has_text="hello from alice").wait_for()
        await alice.fill("#community-input", "nice PogCom there")
        await alice.press("#community-input", "Enter")
        emote = bob.locator(".chat-message", has_text="nice").locator("img.chat-emote")
        await emote.wait_for()
        assert await emote.get_attribute("alt") == "PogCom"
        await alice.fill("#community-input", XSS)
        await alice.click(".chat-send")
        xss = bob.locator(".chat-message", has_text="onerror")
        await xss.wait_for()
        assert await xss.locator(".chat-content").text_content() == XSS
        assert await bob.locator(".chat-message img:not(.chat-emote), .chat-message b").count() == 0

        # bob's channel page in another tab, to see its Community link's dot
        channel_page = await ctx_b.new_page()
        watch_c = PageWatch(channel_page, base)
        await channel_page.goto(f"/streams/{SLUG}")
        await channel_page.wait_for_selector("#chat-form:not([hidden])")
        assert await channel_page.locator("#community-link-dot").is_hidden()

        # a message in #clips: an unread marker for bob in #general's list, and the dot
        await alice.goto(f"/streams/{SLUG}/community/clips")
        await _ready(alice)
        await alice.fill("#community-input", "a clip for you")
        await alice.press("#community-input", "Enter")
        # stored: alice's own page shows it (a refusal shows an error instead)
        await alice.locator(".chat-message", has_text="a clip for you").wait_for()
        marker = bob.locator("#community-topic-list li[data-topic='clips'] [data-role='unread']")
        await marker.wait_for(state="visible")
        assert await marker.text_content() == "1"
        await channel_page.locator("#community-link-dot").wait_for(state="visible")
        await bob.screenshot(path=str(screenshot_path("community-unread.png")))

        # opening #clips shows the message and marks it read: the marker is gone after
        await bob.click("#community-topic-list li[data-topic='clips'] a")
        await bob.wait_for_url("**/community/clips")
        await _ready(bob)
        await bob.locator(".chat-message", has_text="a clip for you").wait_for()
        await bob.wait_for_selector("#community[data-read]")  # the marker is stored
        await bob.goto(f"/streams/{SLUG}/community/general")
        await _ready(bob)
        cleared = bob.locator("#community-topic-list li[data-topic='clips'] [data-role='unread']")
        assert await cleared.is_hidden()
        assert await bob.locator(".chat-message", has_text="hello from alice").count() == 1
        await bob.screenshot(path=str(screenshot_path("community-read.png")))
        for w in (watch_a, watch_b, watch_c):
            w.check()
        assert not owner_errors
        for ctx in (ctx_o, ctx_a, ctx_b):
            await ctx.close()
