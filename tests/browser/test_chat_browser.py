"""Two real Chromium pages chatting on a channel page: history, live messages, XSS as text,
the login prompt for anonymous readers, moderator delete from the message's hover actions."""

from __future__ import annotations

import pytest
from chat_support import make_chat_channel

from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.conftest import running_server

pytestmark = [pytest.mark.integration, pytest.mark.browser]

XSS = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
PASSWORD = "correct horse battery"


async def _logged_in_page(browser, base: str, username: str):  # noqa: F811
    context = await browser.new_context(base_url=base)
    r = await context.request.post(
        "/api/auth/register",
        data={"username": username, "password": PASSWORD, "email": f"{username}@example.test"},
    )
    assert r.status == 201, await r.text()
    page = await context.new_page()
    return context, page


async def test_two_pages_chat(browser, settings_env) -> None:  # noqa: F811
    async with running_server(settings_env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        # The first account registered is an admin: take it for the channel owner's friend
        # so the two chatting users are ordinary viewers.
        ctx0, _ = await _logged_in_page(browser, base, "siteadmin")
        await make_chat_channel(server, "streamer", "chat-page")
        ctx_a, alice = await _logged_in_page(browser, base, "alice")
        ctx_b, bob = await _logged_in_page(browser, base, "bob")
        watch_a, watch_b = PageWatch(alice, base), PageWatch(bob, base)
        await alice.goto("/streams/chat-page")
        await bob.goto("/streams/chat-page")
        for page in (alice, bob):
            await page.wait_for_selector("#chat-form:not([hidden])")
        # Each sees the other in the viewer list.
        await alice.wait_for_function(
            "() => document.getElementById('chat-viewer-count').textContent === '2'"
        )

        await alice.fill("#chat-input", "hello bob, see https://example.org/x")
        # The counter follows the input (the input event may land a tick after fill()).
        await alice.wait_for_function(
            "() => document.getElementById('chat-counter').textContent === '36/500'", timeout=5000
        )
        await alice.press("#chat-input", "Enter")
        msg = bob.locator(".chat-message", has_text="hello bob")
        await msg.wait_for()
        link = msg.locator("a")
        assert await link.get_attribute("href") == "https://example.org/x"
        assert "noopener" in (await link.get_attribute("rel"))
        assert await msg.locator(".chat-author").text_content() == "alice"

        await bob.fill("#chat-input", XSS)
        await bob.click(".chat-send")
        xss = alice.locator(".chat-message", has_text="onerror")
        await xss.wait_for()
        assert await xss.locator(".chat-content").text_content() == XSS
        assert await alice.locator(".chat-message img, .chat-message script").count() == 0

        # An anonymous reader sees the history and a login prompt, not the input.
        anon_ctx = await browser.new_context(base_url=base)
        anon = await anon_ctx.new_page()
        watch_anon = PageWatch(anon, base)
        await anon.goto("/streams/chat-page")
        await anon.locator(".chat-message", has_text="hello bob").wait_for()
        assert await anon.locator("#chat-login").is_visible()
        assert not await anon.locator("#chat-form").is_visible()

        # The site admin moderates: hover shows Delete; everyone's copy disappears.
        admin = await ctx0.new_page()
        await admin.goto("/streams/chat-page")
        target = admin.locator(".chat-message", has_text="onerror")
        await target.hover()
        await target.get_by_role("button", name="Delete message from bob").click()
        await alice.locator(".chat-message", has_text="onerror").wait_for(state="detached")
        await anon.locator(".chat-message", has_text="onerror").wait_for(state="detached")
        await alice.screenshot(path=str(screenshot_path("chat-two-pages.png")))
        for w in (watch_a, watch_b, watch_anon):
            w.check()
        for ctx in (ctx0, ctx_a, ctx_b, anon_ctx):
            await ctx.close()
