"""The viewer pages in a real headless Chromium, against a real server fed by a real ffmpeg.

A channel page opened while the channel is offline turns into a playing low-latency hls.js
player by itself when ffmpeg starts publishing (transcoded into a 720p + 480p ladder and served
by the real /hls/ routes), shows the server's viewer count, switches rendition from the quality
menu, gets over a network outage and fatal player errors, and goes back to offline when the
publisher stops. User text (a title made to inject a script) shows as text everywhere.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from storage import queries
from storage.models import Channel, Profile, User
from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.conftest import make_channel, make_source, push, rtmp_url, running_server, transcoding

pytestmark = [pytest.mark.integration, pytest.mark.browser]

XSS_TITLE = '<img src=x onerror=alert(1)> & "friends"'
CATEGORY = "Science & <Tech>"
CREATOR = "Alice Liddell"
SOURCE_SECONDS = 45


@pytest.fixture(scope="module")
def source_720p(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 720p30 H.264 + AAC file; the publisher pushes it in real time with -c copy."""
    return make_source(
        tmp_path_factory.mktemp("browser-source") / "720p.flv",
        size="1280x720",
        seconds=SOURCE_SECONDS,
    )


@pytest.fixture
def transcode_env(settings_env: dict[str, str]) -> dict[str, str]:
    return transcoding(settings_env)


async def dress_channel(server, slug: str) -> int:
    """A channel whose title tries to inject markup, with a category and a display name."""
    channel_id, key = await make_channel(server, slug, "alice")
    async with server.db.session() as db:
        await db.execute(
            update(Channel)
            .where(Channel.id == channel_id)
            .values(name=XSS_TITLE, category=CATEGORY)
        )
        user = await queries.get_user_by_username(db, "alice")
        assert isinstance(user, User)
        await db.execute(
            update(Profile).where(Profile.user_id == user.id).values(display_name=CREATOR)
        )
        await db.commit()
    return key


async def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.2)


async def js(page, expression: str):
    return await page.evaluate(expression)


async def wait_js(page, expression: str, timeout: float, what: str) -> None:
    """Wait for a JS expression to be truthy; on timeout say what the player was doing.

    A function, not a bare expression: the page's CSP forbids the eval() Playwright would use.
    """
    try:
        await page.wait_for_function(f"() => ({expression})", timeout=timeout * 1000, polling=200)
    except Exception as exc:
        state = await page.evaluate("""() => {
            const p = window.aethexPlayer || {};
            const v = p.video, h = p.hls;
            return {state: p.state, time: v && v.currentTime, height: v && v.videoHeight,
                    readyState: v && v.readyState, paused: v && v.paused,
                    error: v && v.error && v.error.message,
                    levels: h ? h.levels.map(l => l.height) : null,
                    currentLevel: h ? h.currentLevel : null};
        }""")
        raise AssertionError(f"timed out after {timeout} s waiting for {what}: {state}") from exc


async def playing_on(page, what: str) -> None:
    t = await js(page, "window.aethexPlayer.video.currentTime")
    await wait_js(page, f"window.aethexPlayer.video.currentTime > {t} + 1.5", 20, what)


async def check_recovery(page) -> None:
    """The player gets over a real network outage (hls.js gives up: fatal network error), a
    fatal media error and any other fatal error, each in its own way, and keeps playing."""
    await page.evaluate("""() => {
        const p = window.aethexPlayer;
        window.__fatal = [];
        window.__hlsSeen = p.hls;
        p.hls.on(Hls.Events.ERROR, (e, d) => { if (d.fatal) window.__fatal.push(d.type); });
    }""")

    async def refuse(route) -> None:
        await route.abort()

    # Every HLS request fails for a while: hls.js's own retries run out.
    await page.route("**/hls/**", refuse)
    try:
        await wait_js(
            page, "window.__fatal.includes('networkError')", 15, "hls.js to give up on the network"
        )
        await asyncio.sleep(3.0)
    finally:
        await page.unroute("**/hls/**", refuse)
    await playing_on(page, "playback to resume after the outage")
    # Resumed with startLoad() on the same instance.
    assert await js(page, "window.aethexPlayer.hls === window.__hlsSeen")

    # A fatal media error: recoverMediaError() on the same instance.
    await page.evaluate("""() => {
        const h = window.aethexPlayer.hls;
        window.__mediaRecoveries = 0;
        const recover = h.recoverMediaError.bind(h);
        h.recoverMediaError = () => { window.__mediaRecoveries += 1; recover(); };
        h.trigger(Hls.Events.ERROR, {type: Hls.ErrorTypes.MEDIA_ERROR,
                                     details: 'testInjectedError', fatal: true,
                                     error: new Error('injected by the test')});
    }""")
    await wait_js(page, "window.__mediaRecoveries === 1", 5, "recoverMediaError()")
    await playing_on(page, "playback to resume after a media error")
    assert await js(page, "window.aethexPlayer.hls === window.__hlsSeen")

    # Any other fatal error: the player is destroyed and made again.
    await page.evaluate("""() => window.aethexPlayer.hls.trigger(Hls.Events.ERROR, {
        type: Hls.ErrorTypes.OTHER_ERROR, details: 'testInjectedError', fatal: true,
        error: new Error('injected by the test')})""")
    await wait_js(
        page,
        "window.aethexPlayer.hls && window.aethexPlayer.hls !== window.__hlsSeen",
        10,
        "a new hls.js instance",
    )
    await playing_on(page, "playback to resume in a new player")
    assert await js(page, "window.aethexPlayer.hls.levels.length") == 2
    assert await page.locator("#quality option").count() == 3


async def test_offline_page_goes_live_plays_switches_quality_recovers_and_goes_offline(
    browser,  # noqa: F811 - the fixture, imported by name
    transcode_env,
    source_720p,
) -> None:
    slug = "alice-live"
    async with running_server(transcode_env) as server:
        key = await dress_channel(server, slug)
        base = f"http://127.0.0.1:{server.http_port}"
        context = await browser.new_context(viewport={"width": 1366, "height": 800})
        page = await context.new_page()
        watch = PageWatch(page, base)

        # Offline: the creator's name, the title as plain text, no player yet.
        await page.goto(f"{base}/streams/{slug}")
        offline = page.locator("#offline")
        assert await offline.is_visible()
        assert (
            await page.locator("#offline-title").inner_text()
        ).strip() == f"{CREATOR} is offline"
        assert await page.locator("#player").is_hidden()
        assert await page.locator("#stream-title").inner_text() == XSS_TITLE
        assert await page.locator("#stream-category").inner_text() == CATEGORY
        assert await page.locator("img[src='x']").count() == 0
        assert await page.locator("section#chat[aria-label='Chat']").count() == 1
        await page.screenshot(path=str(screenshot_path("viewer-offline.png")))

        # The publisher starts; the page turns into a playing player by itself.
        proc = await push(source_720p, rtmp_url(server, key))
        try:
            await wait_until(lambda: server.registry.get(slug) is not None, 15, "the publisher")
            await wait_js(
                page, "window.aethexPlayer.state === 'live'", 30, "the page to switch to the player"
            )
            assert await offline.is_hidden()
            await wait_js(
                page,
                "window.aethexPlayer.hls && window.aethexPlayer.video.currentTime > 0.5",
                30,
                "playback to start",
            )
            t0 = await js(page, "window.aethexPlayer.video.currentTime")
            await asyncio.sleep(2.0)
            t1 = await js(page, "window.aethexPlayer.video.currentTime")
            assert t1 > t0 + 1.0, f"video.currentTime did not advance: {t0} -> {t1}"

            # hls.js runs in low-latency mode against our master playlist.
            config = await js(
                page,
                """() => ({
                lowLatency: window.aethexPlayer.hls.config.lowLatencyMode,
                url: window.aethexPlayer.hls.url})""",
            )
            assert config["lowLatency"] is True
            # The page's own viewer session rides along (its beacon counts it behind a cache).
            assert re.search(rf"/hls/{slug}/master\.m3u8\?session=[0-9a-f]{{32}}$", config["url"])

            # Every rendition is in hls.levels and in the quality menu (plus Auto).
            heights = await js(page, "window.aethexPlayer.hls.levels.map(l => l.height)")
            assert sorted(heights) == [480, 720], heights
            labels = await page.locator("#quality option").all_inner_texts()
            assert labels[0].startswith("Auto")
            assert labels[1:] == ["720p", "480p"]
            assert await page.locator("#quality").is_enabled()

            # This page is the one viewer: the server counts it from its playlist requests
            # and the page shows the count from the stream row.
            await wait_js(
                page,
                "document.getElementById('viewer-count').textContent === '1'",
                25,
                "the viewer count to show this viewer",
            )
            assert await page.locator("#viewers").inner_text() == "1 viewer"

            # The home page lists the live channel, its title as text, and its thumbnail.
            thumb = server.settings.data_dir / "thumbnails" / f"{slug}.jpg"
            await wait_until(thumb.is_file, 15, "the first thumbnail")
            home = await context.new_page()
            home_watch = PageWatch(home, base)
            await home.goto(f"{base}/")
            card = home.locator(f"a.card-link[href='/streams/{slug}']")
            assert await card.count() == 1
            assert await card.locator(".card-title").inner_text() == XSS_TITLE
            assert await card.locator(".card-creator").inner_text() == CREATOR
            assert await card.locator(".thumb-viewers").inner_text() == "1 viewer"
            await home.wait_for_function(
                "() => document.querySelector('a.card-link img').naturalWidth > 0", timeout=10_000
            )
            assert await home.locator("img[src='x']").count() == 0
            await home.screenshot(path=str(screenshot_path("viewer-home.png")))
            home_watch.check()
            # Keyboard: Tab from the top reaches the channel card.
            await home.keyboard.press("Tab")  # skip link
            for _ in range(12):  # past the site navigation
                await home.keyboard.press("Tab")
                if (
                    await home.evaluate("document.activeElement.getAttribute('href')")
                    == f"/streams/{slug}"
                ):
                    break
            else:
                raise AssertionError("the channel card cannot be reached with the keyboard")
            await home.close()

            # Choosing a rung in the menu switches to it: hls.currentLevel and the frames.
            playing = await js(page, "window.aethexPlayer.video.videoHeight")
            target = 480 if playing != 480 else 720
            index = heights.index(target)
            await page.locator("#quality").focus()
            await page.select_option("#quality", label=f"{target}p")
            await wait_js(
                page,
                f"window.aethexPlayer.hls.currentLevel === {index} && "
                f"window.aethexPlayer.video.videoHeight === {target}",
                20,
                f"the {target}p rendition to play",
            )
            assert await js(page, "window.aethexPlayer.hls.autoLevelEnabled") is False
            t2 = await js(page, "window.aethexPlayer.video.currentTime")
            await wait_js(
                page,
                f"window.aethexPlayer.video.currentTime > {t2} + 0.5",
                10,
                f"{target}p frames to keep playing",
            )
            await page.screenshot(path=str(screenshot_path("viewer-player.png")))
            # And back to automatic selection.
            await page.select_option("#quality", value="-1")
            await wait_js(
                page, "window.aethexPlayer.hls.autoLevelEnabled === true", 5, "Auto quality"
            )
            # Playback is within a few seconds of the live edge (LL-HLS, part hold-back).
            latency = await js(page, "window.aethexPlayer.hls.latency")
            assert 0 < latency < 4.0, f"{latency} s behind the live edge"

            await check_recovery(page)

            # The publisher stops; the page goes back to offline by itself.
            _, err = await asyncio.wait_for(proc.communicate(), SOURCE_SECONDS + 30)
            assert proc.returncode == 0, err.decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await wait_js(
            page, "window.aethexPlayer.state === 'offline'", 45, "the page to go back to offline"
        )
        assert await offline.is_visible()
        assert await page.locator("#player").is_hidden()
        assert await page.locator("#quality").is_disabled()
        watch.check()
        await context.close()


async def test_pages_without_a_stream(browser, settings_env) -> None:  # noqa: F811
    """Empty home page, 404 page, and the chat column/drawer on wide and narrow screens."""
    async with running_server(settings_env) as server:
        await make_channel(server, "quiet-one", "bob")
        base = f"http://127.0.0.1:{server.http_port}"
        context = await browser.new_context(viewport={"width": 1366, "height": 800})
        page = await context.new_page()
        watch = PageWatch(page, base)

        await page.goto(f"{base}/")
        assert await page.locator("#nobody-live").is_visible()
        assert "Nobody is live" in await page.locator("#nobody-live h2").inner_text()

        response = await page.goto(f"{base}/streams/no-such-channel")
        assert response is not None and response.status == 404
        assert await page.locator("h1").inner_text() == "Not found"

        # Wide: chat is a column beside the player, no drawer button.
        await page.goto(f"{base}/streams/quiet-one")
        assert (await page.locator("#offline-title").inner_text()).strip() == "bob is offline"
        chat = page.locator("section#chat[aria-label='Chat']")
        assert await chat.is_visible()
        assert await page.locator("#chat-toggle").is_hidden()
        stage, panel = (
            await page.locator(".stage").bounding_box(),
            await page.locator("#chat-panel").bounding_box(),
        )
        assert stage and panel and panel["x"] >= stage["x"] + stage["width"] - 1
        watch.check()
        await context.close()

        # Narrow: chat is a drawer opened and closed from the keyboard.
        context = await browser.new_context(
            viewport={"width": 390, "height": 800}, is_mobile=True, has_touch=True
        )
        page = await context.new_page()
        watch = PageWatch(page, base)
        await page.goto(f"{base}/streams/quiet-one")
        toggle = page.locator("#chat-toggle")
        assert await toggle.is_visible()
        assert await toggle.get_attribute("aria-expanded") == "false"
        assert not await page.locator("#chat").is_visible()
        await toggle.focus()
        await page.keyboard.press("Enter")
        await page.wait_for_function(
            "() => getComputedStyle(document.getElementById('chat-panel')).visibility === 'visible'"
        )
        assert await toggle.get_attribute("aria-expanded") == "true"
        assert await page.evaluate("document.activeElement.id") == "chat-close"
        await page.wait_for_timeout(400)  # the drawer slides in
        await page.screenshot(path=str(screenshot_path("viewer-mobile-chat.png")))
        await page.keyboard.press("Escape")
        assert await toggle.get_attribute("aria-expanded") == "false"
        assert await page.evaluate("document.activeElement.id") == "chat-toggle"
        watch.check()
        await context.close()
