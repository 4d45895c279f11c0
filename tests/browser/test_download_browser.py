"""The video page's Download form in real headless Chromium, under the page's own CSP.

download.js fills the quality choice from the video's master playlist; choosing a rendition
and pressing Download saves that rendition's MP4 under the name the server gives it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage import queries
from storage.models import Channel, StreamStatus
from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.conftest import make_channel
from tests.integration.test_downloads import box_order, write_recording

pytestmark = [pytest.mark.integration, pytest.mark.browser]


async def test_choose_a_quality_and_download(server, browser, tmp_path: Path) -> None:  # noqa: F811
    channel_id, _ = await make_channel(server, "dl-tv", "dora")
    now = datetime.now(UTC)
    async with server.db.session() as db:
        (await db.get(Channel, channel_id)).allow_downloads = True
        row = await queries.start_stream(db, channel_id, now, title="Speedrun")
        await queries.end_stream(db, row.id, now, StreamStatus.ARCHIVED)
        row.vod_available, row.vod_duration_seconds = True, 2.0
        row.vod_path = f"streams/{row.id}/master.m3u8"
        await db.commit()
    write_recording(server.settings.data_dir / "streams" / str(row.id))

    base = f"http://127.0.0.1:{server.http_port}"
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    watch = PageWatch(page, base)
    await page.goto(f"{base}/videos/{row.id}")
    quality = page.locator("#download-rendition")
    await page.wait_for_selector('#download-rendition option[value="108p"]', state="attached")
    assert await quality.locator("option").all_inner_texts() == [
        "Best quality",
        "108p (192\u00d7108)",
    ]
    await quality.select_option("108p")
    await page.screenshot(path=str(screenshot_path("download-form.png")))
    async with page.expect_download() as info:
        await page.click("#download-form button[type=submit]")
    download = await info.value
    assert download.suggested_filename.startswith("dl-tv-")
    assert download.suggested_filename.endswith("-Speedrun-108p.mp4")
    saved = tmp_path / download.suggested_filename
    await download.save_as(str(saved))
    data = saved.read_bytes()
    assert box_order(data)[:3] == [b"ftyp", b"moov", b"mdat"]
    watch.check()
    await context.close()
