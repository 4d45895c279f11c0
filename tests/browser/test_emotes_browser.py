"""Emotes in real Chromium: the owner adds one from the dashboard's Emotes page and the admin a
global one from the admin pages; a viewer's channel home lists the channel's emotes (updated
live), the picker inserts a code from the keyboard, and the message shows the emote image on
another page. A message (and a refused code) carrying markup renders as text and emote images
only: no element is ever injected."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.conftest import running_server

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PASSWORD = "correct horse battery"
SLUG = "emote-page"
MARKUP = '<img src=x onerror="alert(1)"><b>bold</b>'


def png(color: tuple[int, int, int, int]) -> dict[str, object]:
    out = io.BytesIO()
    Image.new("RGBA", (48, 48), color).save(out, "PNG")
    return {"name": "emote.png", "mimeType": "image/png", "buffer": out.getvalue()}


async def _user(browser, base: str, username: str):  # noqa: F811
    context = await browser.new_context(base_url=base)
    r = await context.request.post(
        "/api/auth/register",
        data={"username": username, "password": PASSWORD, "email": f"{username}@example.test"},
    )
    assert r.status == 201, await r.text()
    page = await context.new_page()
    return context, page


async def _add(page, code: str, image: dict[str, object]) -> None:
    await page.fill("#new-emote input[name=code]", code)
    await page.set_input_files("#new-emote input[name=file]", image)
    async with page.expect_navigation():
        await page.click("#new-emote button[type=submit]")


async def test_emotes_in_the_browser(browser, settings_env) -> None:  # noqa: F811
    async with running_server(settings_env) as server:
        from storage import queries

        base = f"http://127.0.0.1:{server.http_port}"
        _, admin = await _user(browser, base, "siteadmin")  # the first account: an admin
        _, owner = await _user(browser, base, "streamer")
        _, viewer = await _user(browser, base, "viewer")
        async with server.db.session() as db:
            await queries.create_channel(db, "streamer", SLUG)
            await db.commit()
        watches = [PageWatch(p, base) for p in (admin, owner, viewer)]

        # The viewer is on the channel's home before any emote exists.
        await viewer.goto(f"/streams/{SLUG}")
        await viewer.wait_for_selector("#chat-form:not([hidden])")
        assert await viewer.locator("#channel-emotes").is_hidden()

        # The owner reaches the Emotes page from the dashboard and adds one; a code carrying
        # markup is refused and shown back as text.
        await owner.goto("/dashboard")
        await owner.click(f"#channel-{SLUG} a:has-text('Emotes')")
        await owner.wait_for_selector("#new-emote")
        await owner.evaluate("document.getElementById('new-emote').noValidate = true")
        await _add(owner, "<svg onload=alert(1)>", png((0, 0, 255, 255)))
        assert "must be" in await owner.locator(".form-error").text_content()
        assert await owner.locator("main svg, main script").count() == 0
        await _add(owner, "PogChamp", png((255, 0, 0, 255)))
        await owner.wait_for_selector("#emotes-table tr[data-code=PogChamp] img")

        # The admin adds a global one from the admin pages.
        await admin.goto("/dashboard/admin/users")
        await admin.click(".admin-nav a:has-text('Emotes')")
        await _add(admin, "GlobeW", png((0, 160, 0, 255)))
        await admin.wait_for_selector("#emotes-table tr[data-code=GlobeW]")

        # The viewer's page got both through the chat socket: the channel home lists the
        # channel's emote, the picker has both; the picker inserts a code from the keyboard.
        await viewer.wait_for_selector("#channel-emotes:not([hidden]) li[data-code=PogChamp] img")
        assert await viewer.locator("#channel-emote-list li").count() == 1
        await viewer.wait_for_selector(".emote-picker-item[data-code=GlobeW]", state="attached")
        await viewer.fill("#chat-input", "look")
        await viewer.focus("#emote-picker-toggle")
        await viewer.keyboard.press("Enter")
        await viewer.wait_for_selector("#emote-picker:not([hidden])")
        focused = await viewer.evaluate("document.activeElement.dataset.code")
        assert focused == "PogChamp"  # the channel's emotes first
        await viewer.keyboard.press("ArrowRight")
        await viewer.keyboard.press("Enter")
        assert await viewer.input_value("#chat-input") == "look GlobeW "
        assert await viewer.locator("#emote-picker").is_hidden()
        await viewer.click("#emote-picker-toggle")
        await viewer.click(".emote-picker-item[data-code=PogChamp]")
        await viewer.type("#chat-input", MARKUP)
        assert await viewer.input_value("#chat-input") == "look GlobeW PogChamp " + MARKUP
        await viewer.press("#chat-input", "Enter")

        # Another page (the owner's, on the channel) shows the images and the markup as text.
        await owner.goto(f"/streams/{SLUG}")
        msg = owner.locator(".chat-message", has_text="look")
        await msg.wait_for()
        content = msg.locator(".chat-content")
        await content.locator("img.chat-emote[alt=PogChamp]").wait_for()
        imgs = content.locator("img")
        assert await imgs.count() == 2
        assert [await imgs.nth(i).get_attribute("alt") for i in range(2)] == [
            "GlobeW",
            "PogChamp",
        ]
        src = await imgs.nth(0).get_attribute("src")
        assert src is not None and src.startswith("/emotes/files/emote-")
        assert await content.locator("b, script, svg").count() == 0
        assert await content.text_content() == "look   " + MARKUP
        loaded = await owner.evaluate(
            "Array.from(document.querySelectorAll('.chat-content img')).every(i => i.complete "
            "&& i.naturalWidth > 0)"
        )
        assert loaded
        await owner.screenshot(path=str(screenshot_path("emotes-chat.png")))
        for watch in watches:
            watch.check()
