"""Two real Chromium pages on a live channel (issue 16): the owner raids another live channel
from the chat column's Raid tool and the viewer's page is taken there with the arrival notice;
in the same session, the grouped viewer list, the typing indicator and the owner's badge."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from chat_support import make_chat_channel

from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.conftest import running_server

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PASSWORD = "correct horse battery"


async def _logged_in_page(browser, base: str, username: str):  # noqa: F811
    context = await browser.new_context(base_url=base)
    r = await context.request.post(
        "/api/auth/register",
        data={"username": username, "password": PASSWORD, "email": f"{username}@example.test"},
    )
    assert r.status == 201, await r.text()
    return context, await context.new_page()


async def _go_live(server, channel_id: int, slug: str, viewers: int) -> None:
    from storage import queries

    now = datetime.now(UTC)
    async with server.db.session() as db:
        stream = await queries.start_stream(db, channel_id, now)
        await db.commit()
    live = server.registry.start(
        channel_id=channel_id, slug=slug, stream_id=stream.id, started_at=now
    )
    live.viewers = viewers


async def test_raid_moves_the_viewer_page(browser, settings_env) -> None:  # noqa: F811
    from storage import queries

    async with running_server(settings_env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        ctx0, _ = await _logged_in_page(browser, base, "siteadmin")  # the first is an admin
        ctx_o, owner = await _logged_in_page(browser, base, "streamer")
        ctx_v, viewer = await _logged_in_page(browser, base, "watcher")
        async with server.db.session() as db:
            raider = await queries.create_channel(db, "streamer", "raider")
            await db.commit()
        target_id, _, _ = await make_chat_channel(server, "host", "target")
        await _go_live(server, raider.id, "raider", viewers=2)
        await _go_live(server, target_id, "target", viewers=0)
        watch_o, watch_v = PageWatch(owner, base), PageWatch(viewer, base)
        await owner.goto("/streams/raider")
        await viewer.goto("/streams/raider")
        for page in (owner, viewer):
            await page.wait_for_selector("#chat-form:not([hidden])")

        # The viewer list, grouped by role.
        await viewer.click("#chat-viewers summary")
        owners = viewer.locator('.chat-viewer-group[data-role="owner"]')
        await owners.locator("li", has_text="@streamer").wait_for()
        viewers = viewer.locator('.chat-viewer-group[data-role="viewer"]')
        await viewers.locator("li", has_text="@watcher").wait_for()
        assert "Owner (1)" in await owners.text_content()

        # Typing shows on the other page; the owner's message carries a titled badge.
        await viewer.locator("#chat-input").press_sequentially("hel")
        await owner.locator("#chat-typing", has_text="watcher is typing…").wait_for()
        await owner.fill("#chat-input", "raid time")
        await owner.press("#chat-input", "Enter")
        msg = viewer.locator(".chat-message", has_text="raid time")
        await msg.wait_for()
        assert await msg.locator(".chat-badge-owner").get_attribute("title") == "Channel owner"

        # Following shows at the viewer's next message: a titled follower badge, and the
        # owner's viewer list moves them to Followers.
        await viewer.click("#follow-button")
        await viewer.wait_for_selector('#follow-button[aria-pressed="true"]')
        await viewer.fill("#chat-input", "followed!")
        await viewer.press("#chat-input", "Enter")
        theirs = owner.locator(".chat-message", has_text="followed!")
        await theirs.wait_for()
        tag = theirs.locator(".chat-badge-follower")
        assert await tag.get_attribute("title") == "Follows this channel"
        await owner.click("#chat-viewers summary")
        followers = owner.locator('.chat-viewer-group[data-role="follower"]')
        await followers.locator("li", has_text="@watcher").wait_for()

        # The raid, from the owner's chat column: search, then two clicks (no dialog).
        assert not await viewer.locator("#raid-tools").count()  # the owner's tool only
        await owner.click("#raid-tools summary")
        button = owner.get_by_role("button", name="Raid target")
        await button.click()
        await owner.get_by_role("button", name="Confirm: send your viewers to target").click()
        await viewer.wait_for_url(f"{base}/streams/target")  # the ?raid= marker is removed
        notice = viewer.locator("#raid-notice")
        await notice.wait_for()
        assert await notice.text_content() == "raider is raiding with 2 viewers!"
        await owner.locator("#raid-notice", has_text="Your raid to target").wait_for()
        assert owner.url == f"{base}/streams/raider"  # the owner stays
        await viewer.screenshot(path=str(screenshot_path("raid-arrival.png")))
        for w in (watch_o, watch_v):
            w.check()
        for ctx in (ctx0, ctx_o, ctx_v):
            await ctx.close()
