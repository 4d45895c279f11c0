"""Two real Chromium pages on a channel page (issue 16): the owner starts a poll from the chat
column, the viewer votes, both see the count move and the result when the owner ends it; a
reaction tapped on one page floats over the other's player."""

from __future__ import annotations

import pytest

from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.conftest import running_server

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PASSWORD = "correct horse battery"
FIRE = "\U0001f525"


async def _logged_in_page(browser, base: str, username: str):  # noqa: F811
    context = await browser.new_context(base_url=base)
    r = await context.request.post(
        "/api/auth/register",
        data={"username": username, "password": PASSWORD, "email": f"{username}@example.test"},
    )
    assert r.status == 201, await r.text()
    return context, await context.new_page()


async def test_poll_and_reaction_across_two_pages(browser, settings_env) -> None:  # noqa: F811
    from storage import queries

    async with running_server(settings_env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        # The first account registered is an admin: take it first, so the owner and the
        # viewer are ordinary users.
        ctx0, _ = await _logged_in_page(browser, base, "siteadmin")
        ctx_o, owner = await _logged_in_page(browser, base, "streamer")
        ctx_v, viewer = await _logged_in_page(browser, base, "viewer")
        async with server.db.session() as db:
            await queries.create_channel(db, "streamer", "poll-page")
            await db.commit()
        watch_o, watch_v = PageWatch(owner, base), PageWatch(viewer, base)
        await owner.goto("/streams/poll-page")
        await viewer.goto("/streams/poll-page")
        for page in (owner, viewer):
            await page.wait_for_selector("#chat-form:not([hidden])")
        assert not await viewer.locator("#poll-open").is_visible()  # a moderator's tool

        await owner.click("#poll-open")
        await owner.fill(".poll-question-input", "Which colour?")
        inputs = owner.locator(".poll-option-input")
        await inputs.nth(0).fill("Red")
        await inputs.nth(1).fill("Blue")
        await owner.click(".poll-more")
        await inputs.nth(2).fill("Green")
        await owner.click(".poll-go")
        for page in (owner, viewer):
            await page.locator("#poll-box .poll-question", has_text="Which colour?").wait_for()
        await viewer.locator("button.poll-choice", has_text="Blue").click()
        for page in (owner, viewer):
            await (
                page.locator(".poll-option", has_text="Blue")
                .locator(".poll-count", has_text="1 · 100%")
                .wait_for()
            )
        # Voted: the viewer's choices are no longer buttons; its own is marked.
        await viewer.locator(".poll-mine", has_text="Blue").wait_for()
        assert await viewer.locator("button.poll-choice").count() == 0
        await viewer.screenshot(path=str(screenshot_path("poll-voted.png")))

        await owner.click(".poll-end")
        for page in (owner, viewer):
            await page.locator("#poll-box .poll-label", has_text="Poll ended").wait_for()
            result = page.locator(".chat-poll-result", has_text="Which colour?")
            await result.wait_for()
            assert "Blue: 1 (100%)" in (await result.text_content() or "")

        # A reaction tapped on the viewer's page floats over the owner's player.
        await viewer.locator(f'.reaction-button[data-emoji="{FIRE}"]').click()
        await owner.locator(".reaction-float", has_text=FIRE).wait_for(state="attached")
        await owner.wait_for_function(
            "() => document.getElementById('reaction-count').dataset.total === '1'"
        )
        await owner.screenshot(path=str(screenshot_path("poll-ended-reaction.png")))
        for w in (watch_o, watch_v):
            w.check()
        for ctx in (ctx0, ctx_o, ctx_v):
            await ctx.close()
