"""/dashboard/videos in a real headless Chromium against a real server (issue 13): the owner
renames a past broadcast, makes it private, pins it, sets the channel's retention and deletes
another one, each through the page's own buttons; the server's answers (JSON API, files on
disk) are checked after each step. A screenshot is kept as a test artifact."""

from __future__ import annotations

import pytest

from storage import videos as video_queries
from tests.accounts import csrf_of, register
from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.conftest import running_server
from tests.integration.test_videos import recorded

pytestmark = [pytest.mark.integration, pytest.mark.browser]


async def test_edit_pin_and_delete_on_the_videos_dashboard(
    browser,  # noqa: F811 - the fixture, imported by name
    settings_env,
) -> None:
    async with running_server(settings_env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        alice = await register(base, "alice")
        try:
            async with alice.post(
                f"{base}/api/channels",
                json={"slug": "alice-tv", "name": "Alice TV"},
                headers={"X-CSRF-Token": await csrf_of(alice, base)},
            ) as r:
                assert r.status == 201, await r.text()
                channel_id = (await r.json())["id"]
            keep = await recorded(server, channel_id, title="Speedrun night")
            gone = await recorded(server, channel_id, title="Test stream")
            cookie = next(c for c in alice.cookie_jar if c.key == "aethex_session")

            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            await context.add_cookies(
                [{"name": cookie.key, "value": cookie.value, "url": base, "httpOnly": True}]
            )
            page = await context.new_page()
            watch = PageWatch(page, base)

            async def video(stream_id: int) -> dict:
                async with alice.get(f"{base}/api/videos/{stream_id}") as r:
                    assert r.status == 200
                    return await r.json()

            await page.goto(f"{base}/dashboard")
            await page.click('a[href="/dashboard/videos"]')
            await page.wait_for_url(f"{base}/dashboard/videos")
            row = page.locator(f'.video-row[data-video-id="{keep.id}"]')
            await row.wait_for()

            # Rename, describe and make private.
            await row.locator('input[name="title"]').fill("Speedrun night (any%)")
            await row.locator('textarea[name="description"]').fill("PB at 1:02:03")
            await row.locator('select[name="visibility"]').select_option("private")
            await row.locator('button[type="submit"]').click()
            await row.locator("[data-ok]").wait_for(state="visible")
            doc = await video(keep.id)
            assert doc["title"] == "Speedrun night (any%)" and doc["visibility"] == "private"
            assert doc["description"] == "PB at 1:02:03"

            # Pin, then the button offers Unpin.
            pin = row.locator("[data-pin]")
            await pin.click()
            await page.wait_for_function(
                f"() => document.querySelector('.video-row[data-video-id=\"{keep.id}\"]')"
                ".dataset.pinned === 'true'"
            )
            assert (await pin.text_content() or "").strip() == "Unpin"
            assert (await video(keep.id))["pinned"] is True

            # The channel's retention settings.
            form = page.locator('[data-settings-form][data-channel="alice-tv"]')
            await page.locator(".video-settings summary").click()
            await form.locator('input[name="retention_days"]').fill("14")
            await form.locator('input[name="allow_downloads"]').check()
            await form.locator('button[type="submit"]').click()
            await form.locator("[data-ok]").wait_for(state="visible")
            async with alice.get(f"{base}/api/channels/alice-tv/videos") as r:
                lib = await r.json()
            assert lib["settings"]["retention_days"] == 14
            assert lib["settings"]["allow_downloads"] is True
            # A bad value: the API's message shows, nothing changes.
            await form.locator('input[name="retention_days"]').fill("20000")
            await form.locator('button[type="submit"]').click()
            await form.locator("[data-error]").wait_for(state="visible")

            # Delete asks for a second click; then the row shows deleted and the files go.
            other = page.locator(f'.video-row[data-video-id="{gone.id}"]')
            directory = video_queries.recording_dir(server.settings.data_dir, gone.id)
            assert directory.is_dir()
            await other.locator("[data-delete]").click()
            assert "again" in (await other.locator("[data-delete]").text_content() or "")
            assert directory.is_dir()
            await other.locator("[data-delete]").click()
            await page.wait_for_function(
                f"() => document.querySelector('.video-row[data-video-id=\"{gone.id}\"]')"
                ".classList.contains('is-deleted')"
            )
            assert not directory.exists()
            assert (await video(gone.id))["deleted"] is True
            await page.screenshot(path=str(screenshot_path("videos-dashboard.png")), full_page=True)

            # After a reload the page shows what the server holds.
            await page.reload()
            row = page.locator(f'.video-row[data-video-id="{keep.id}"]')
            assert await row.locator('input[name="title"]').input_value() == (
                "Speedrun night (any%)"
            )
            assert await row.locator('select[name="visibility"]').input_value() == "private"
            assert (
                await page.locator(f'.video-row.is-deleted[data-video-id="{gone.id}"]').count() == 1
            )
            watch.check()
            await context.close()
        finally:
            await alice.close()
