"""Accounts in a real headless Chromium: sign up, onboard with an avatar, edit the profile,
create and revoke an API token, log out and back in. The forms carry the CSRF token the
server put in them; the page's CSP must not block anything."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from tests.accounts import DEFAULT_PASSWORD
from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.conftest import running_server

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def write_png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> Path:
    image = Image.new("RGB", size, colour)
    for x in range(0, size[0], 20):
        for y in range(size[1]):
            image.putpixel((x, y), (255, 255, 255))
    image.save(path, "PNG")
    return path


async def test_sign_up_onboard_and_edit_profile_in_chromium(
    browser,  # noqa: F811 - the fixture, imported by name
    settings_env,
    tmp_path: Path,
) -> None:
    avatar = write_png(tmp_path / "avatar.png", (640, 480), (200, 60, 60))
    banner = write_png(tmp_path / "banner.png", (2000, 800), (60, 60, 200))
    async with running_server(settings_env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        context = await browser.new_context()
        page = await context.new_page()
        watch = PageWatch(page, base)

        # Sign up from the home page's header.
        await page.goto(f"{base}/")
        await page.click("text=Sign up")
        await page.fill("input[name=username]", "alice")
        await page.fill("input[name=email]", "alice@example.org")
        await page.fill("input[name=password]", DEFAULT_PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/auth/onboard")
        cookies = {c["name"]: c for c in await context.cookies()}
        assert (
            cookies["aethex_session"]["httpOnly"] and cookies["aethex_session"]["sameSite"] == "Lax"
        )
        # Scripts cannot read the session cookie, but they can read the CSRF token.
        assert "aethex_session" not in await page.evaluate("document.cookie")
        assert len(await page.get_attribute('meta[name="csrf-token"]', "content")) == 64

        # Onboarding: new username, display name, bio and an avatar file.
        await page.fill("input[name=username]", "alice_live")
        await page.fill("input[name=display_name]", "Alice <Live>")
        await page.fill("textarea[name=bio]", "Speedruns every Friday.")
        await page.set_input_files("input[name=avatar]", str(avatar))
        await page.click("text=Save and continue")
        await page.wait_for_url(f"{base}/dashboard/profile?welcome=1")
        assert await page.inner_text(".form-notice") == "Welcome! Your profile is set up."
        assert await page.inner_text(".nav-user") == "Alice <Live>"
        natural = await page.eval_on_selector(
            "#avatar-img", "img => [img.complete, img.naturalWidth, img.naturalHeight]"
        )
        assert natural == [True, 256, 256]

        # Edit the profile: display name, a link, the light theme.
        await page.fill("input[name=display_name]", "Alice L.")
        await page.fill("input[name=social_website]", "https://alice.example")
        await page.select_option("select[name=theme]", "light")
        await page.click("text=Save profile")
        await page.wait_for_url(f"{base}/dashboard/profile?saved=1")
        assert await page.get_attribute("html", "data-theme") == "light"
        assert await page.input_value("input[name=social_website]") == "https://alice.example"
        assert await page.inner_text(".nav-user") == "Alice L."

        # A bad link is refused with a message, and nothing is saved.
        await page.fill("input[name=display_name]", "Should not stick")
        await page.fill("input[name=social_website]", "javascript:alert(1)")
        await page.evaluate("document.querySelector('#profile-form').noValidate = true")
        await page.click("text=Save profile")
        assert "social link" in await page.inner_text(".form-error")

        # Banner upload through the page.
        await page.goto(f"{base}/dashboard/profile")
        assert await page.input_value("input[name=display_name]") == "Alice L."
        await page.set_input_files(
            "form[action='/dashboard/profile/banner'] input[type=file]", str(banner)
        )
        await page.click("text=Upload banner")
        await page.wait_for_url(f"{base}/dashboard/profile?banner=1")
        size = await page.eval_on_selector(
            "#banner-img", "img => [img.naturalWidth, img.naturalHeight]"
        )
        assert size[0] <= 1600 and size[1] <= 400 and size[0] > 0

        # An API token, shown once, works as a bearer token, then is revoked.
        await page.fill("input[name=name]", "obs-script")
        await page.click("text=Create token")
        token = await page.input_value("#new-token")
        assert token.startswith("aethex_")
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{base}/api/auth/user", headers={"Authorization": f"Bearer {token}"}
            ) as r:
                assert r.status == 200
                assert (await r.json())["user"]["display_name"] == "Alice L."
            await page.goto(f"{base}/dashboard/profile")
            assert token not in await page.content()
            await page.click("#token-table >> text=Revoke")
            await page.wait_for_url(f"{base}/dashboard/profile?revoked=1")
            async with http.get(
                f"{base}/api/auth/user", headers={"Authorization": f"Bearer {token}"}
            ) as r:
                assert r.status == 401
        await page.screenshot(path=str(screenshot_path("accounts-profile.png")), full_page=True)

        # Log out from the header, then log back in and land where we wanted to go.
        await page.click("text=Log out")
        await page.wait_for_url(f"{base}/")
        assert await page.locator("text=Log in").count() == 1
        await page.goto(f"{base}/dashboard/profile")
        assert page.url.startswith(f"{base}/auth/login?next=")
        await page.fill("input[name=username]", "alice_live")
        await page.fill("input[name=password]", DEFAULT_PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/dashboard/profile")
        assert await page.inner_text(".nav-user") == "Alice L."
        watch.check()
        await context.close()
