"""The creator's path in a real headless Chromium against a real server and a real ffmpeg:
sign up -> create a channel -> reveal and copy the stream key -> ffmpeg publishes with it ->
the dashboard shows LIVE with health figures -> a live title edit reaches the viewer page ->
"End stream" disconnects the encoder -> the stream is listed as past, then with its recording.
A screenshot of the live dashboard is kept as a test artifact."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.browser.browser_support import ROOT, PageWatch, browser  # noqa: F401
from tests.conftest import make_source, push, rtmp_url, running_server, transcoding

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SOURCE_SECONDS = 60  # longer than the test needs: the stream ends by the End stream button


def artifact(name: str) -> Path:
    directory = Path(os.environ.get("AETHEX_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


@pytest.fixture(scope="module")
def source_360p(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(
        tmp_path_factory.mktemp("dashboard-source") / "360p.flv",
        size="640x360",
        seconds=SOURCE_SECONDS,
        bitrate="800k",
    )


async def wait_js(page, expression: str, timeout: float, what: str) -> None:
    """A function, not a bare expression: the page's CSP forbids eval()."""
    try:
        await page.wait_for_function(f"() => ({expression})", timeout=timeout * 1000, polling=200)
    except Exception as exc:
        body = await page.evaluate("() => document.querySelector('main').innerText")
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what}; page:\n{body}"
        ) from exc


async def text_of(page, selector: str) -> str:
    return ((await page.locator(selector).first.text_content()) or "").strip()


async def test_sign_up_go_live_watch_health_and_end(
    browser,  # noqa: F811 - the fixture, imported by name
    settings_env,
    source_360p,
) -> None:
    # One transcoded 360p rung: per-rung speed and drops to show, little CPU.
    env = {
        **transcoding(settings_env),
        "AETHEX_TRANSCODE__PASSTHROUGH": "never",
        "AETHEX_RTMP__ENDED_COOLDOWN": "2",
    }
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        context = await browser.new_context(viewport={"width": 1280, "height": 1000})
        await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        page = await context.new_page()
        watch = PageWatch(page, base)
        publisher = None
        try:
            # Sign up in the browser.
            await page.goto(f"{base}/auth/register")
            await page.fill('input[name="username"]', "alice")
            await page.fill('input[name="email"]', "alice@example.test")
            await page.fill('input[name="password"]', "a long enough password")
            await page.click('button[type="submit"]')
            await page.wait_for_url(lambda url: "/auth/register" not in url)

            # Create a channel on the dashboard.
            await page.goto(f"{base}/dashboard")
            form = page.locator("#new-channel")
            await form.locator('input[name="name"]').fill("Alice plays")
            await form.locator('input[name="slug"]').fill("alice-tv")
            await form.locator('select[name="category"]').select_option("Retro Gaming")
            await form.locator('input[name="tags"]').fill("snes, speedrun")
            await form.locator('button[type="submit"]').click()
            section = page.locator("#channel-alice-tv")
            await section.wait_for(timeout=10_000)
            assert await text_of(page, '#channel-alice-tv [data-field="status"]') == "Offline"
            port = server.rtmp_port
            assert (
                await text_of(page, '#channel-alice-tv [data-field="server"]')
                == f"rtmp://127.0.0.1:{port}/live"
            )

            # The key is masked until shown; Copy puts it on the clipboard.
            key_input = section.locator('[data-field="key"]')
            assert await key_input.get_attribute("type") == "password"
            await section.locator('[data-action="toggle-key"]').click()
            assert await key_input.get_attribute("type") == "text"
            key = await key_input.input_value()
            assert key.startswith("live_")
            await section.locator('[data-action="copy-key"]').click()
            await wait_js(
                page,
                "document.querySelector('#channel-alice-tv "
                "[data-action=\"copy-key\"]').textContent === 'Copied'",
                5,
                "the Copied confirmation",
            )
            assert await page.evaluate("() => navigator.clipboard.readText()") == key

            # A real encoder publishes with the copied key.
            publisher = await push(source_360p, rtmp_url(server, key))
            await wait_js(
                page,
                "document.querySelector('#channel-alice-tv [data-field=\"status\"]')"
                ".textContent === 'Live'",
                20,
                "the dashboard to show Live",
            )
            await wait_js(
                page,
                "document.querySelector('#channel-alice-tv "
                '[data-field="rungs"] tr[data-rendition]\') !== null '
                "&& document.querySelector('#channel-alice-tv "
                "[data-field=\"keyframe\"]').textContent !== '–'",
                30,
                "health figures and the transcoded rung",
            )
            stats = {
                name: await text_of(page, f'#channel-alice-tv [data-field="{name}"]')
                for name in ("viewers", "uptime", "bitrate", "fps", "keyframe", "source")
            }
            assert stats["keyframe"] == "1.00 s", stats
            assert "640×360 avc1 + mp4a" in stats["source"], stats
            assert stats["bitrate"].endswith(("kbit/s", "Mbit/s")), stats
            assert stats["fps"].endswith("fps") and stats["uptime"].startswith("0:00:"), stats
            rung = await text_of(page, '#channel-alice-tv [data-field="rungs"] tr[data-rendition]')
            assert rung.startswith("360p") and "×" in rung, rung

            # The figures refresh without a reload (at least every 2 s).
            await page.evaluate("() => { window.__marker = 1; }")
            uptime = stats["uptime"]
            await wait_js(
                page,
                "document.querySelector('#channel-alice-tv "
                f"[data-field=\"uptime\"]').textContent !== '{uptime}'",
                2.5,
                "the uptime to tick",
            )
            assert await page.evaluate("() => window.__marker") == 1

            # A live title edit reaches an open viewer page without a reload.
            viewer = await context.new_page()
            viewer_watch = PageWatch(viewer, base)
            await viewer.goto(f"{base}/streams/alice-tv")
            assert await viewer.locator("#stream-tags li").all_text_contents() == [
                "snes",
                "speedrun",
            ]
            edit = section.locator('[data-role="stream-edit"]')
            assert await edit.locator('input[name="title"]').input_value() == "Alice plays"
            await edit.locator('input[name="title"]').fill("Boss rush tonight")
            await edit.locator('select[name="category"]').select_option("Speedrunning")
            await edit.locator('input[name="tags"]').fill("snes, tool-assisted, c++ & co")
            await edit.locator('button[type="submit"]').click()
            await wait_js(
                page,
                "document.querySelector('#channel-alice-tv [data-role=\"ok\"]')"
                ".textContent === 'Saved.'",
                5,
                "the stream edit to be saved",
            )
            await wait_js(
                viewer,
                "document.getElementById('stream-title').textContent === "
                "'Boss rush tonight' && document.getElementById("
                "'stream-category').textContent === 'Speedrunning'",
                15,
                "the viewer page to show the new title and category",
            )
            await wait_js(
                viewer,
                "Array.from(document.querySelectorAll('#stream-tags li'), "
                "li => li.textContent).join('|') === "
                "'snes|tool-assisted|c++ & co'",
                15,
                "the viewer page to show the new tags",
            )
            assert key not in await viewer.content()
            viewer_watch.check()
            await viewer.close()

            await page.screenshot(path=str(artifact("dashboard-live.png")), full_page=True)

            # End stream (a second click confirms): the encoder is disconnected.
            stream_id = await section.get_attribute("data-stream-id")
            end = section.locator('[data-action="end"]')
            await end.click()
            await end.click()
            try:
                rc = await asyncio.wait_for(publisher.wait(), 15)
            except TimeoutError:
                raise AssertionError("ffmpeg was not disconnected by End stream") from None
            assert rc != 0
            await wait_js(
                page,
                "document.querySelector('#channel-alice-tv [data-field=\"status\"]')"
                ".textContent === 'Offline'",
                10,
                "the dashboard to show Offline",
            )
            row = f'#channel-alice-tv [data-field="past"] tr[data-stream-id="{stream_id}"]'
            await wait_js(
                page,
                f"document.querySelector('{row}') !== null",
                10,
                "the ended stream in the past streams",
            )
            # Recording is on: the row turns archived with a link to the recording.
            await wait_js(
                page,
                f"document.querySelector('{row} a[href=\"/videos/{stream_id}\"]') !== null",
                30,
                "the VOD link",
            )
            cells = [c.strip() for c in await page.locator(f"{row} td").all_text_contents()]
            assert cells[1] == "Boss rush tonight" and cells[4] == "archived", cells
            assert cells[2].startswith("0:00:"), cells
            await page.screenshot(path=str(artifact("dashboard-ended.png")), full_page=True)

            # The recording plays on its page.
            await page.click(f'{row} a[href="/videos/{stream_id}"]')
            await page.wait_for_url(f"{base}/videos/{stream_id}")
            started = time.monotonic()
            await wait_js(
                page,
                "window.aethexVod && window.aethexVod.video.readyState >= 1 "
                "&& window.aethexVod.video.duration > 1",
                20,
                "the recording to load",
            )
            assert time.monotonic() - started < 20
            watch.check()
        finally:
            if publisher is not None and publisher.returncode is None:
                publisher.kill()
                await publisher.wait()
            await context.close()
