"""The analytics dashboard in a real headless Chromium: reached from the dashboard's link, it
draws its charts with the vendored uPlot (canvases with pixels on them, nothing loaded from
another site, no script error), shows the totals, and the CSV export link works. A screenshot
is kept under test-artifacts/."""

from __future__ import annotations

import pytest

from storage import queries
from tests.accounts import register
from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.integration.test_analytics_api import seed_stream

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SLUG = "chart-tv"

# Whether a canvas has anything drawn on it: some pixel that is not fully transparent.
DRAWN = """(canvas) => {
  const ctx = canvas.getContext("2d");
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) painted++;
  return painted;
}"""


async def test_the_dashboard_draws_the_charts(browser, server) -> None:  # noqa: F811
    base = f"http://127.0.0.1:{server.http_port}"
    async with await register(base, "charter") as api:
        cookie = next(c for c in api.cookie_jar if c.key == "aethex_session")
        async with server.db.session() as s:
            channel = await queries.create_channel(s, "charter", SLUG, "Chart TV")
            await s.commit()
        await seed_stream(server, channel.id)
        context = await browser.new_context(viewport={"width": 1200, "height": 1600})
        await context.add_cookies([{"name": "aethex_session", "value": cookie.value, "url": base}])
        page = await context.new_page()
        watch = PageWatch(page, base)
        await page.goto(f"{base}/dashboard")
        await page.click("a[href='/dashboard/analytics']")
        await page.wait_for_url(f"{base}/dashboard/analytics")
        for chart in ("channel-viewers", "channel-activity", "stream-viewers", "stream-chat"):
            canvas = page.locator(f"#chart-{chart}[data-drawn='true'] canvas")
            await canvas.wait_for(timeout=15_000)
            assert await canvas.evaluate(DRAWN) > 1000, chart
        assert (await page.text_content("#stat-peak dd")).strip() == "8"
        assert (await page.text_content("#stream-unique dd")).strip() == "2"
        assert "Part two" in await page.text_content("#markers")
        await page.screenshot(path=str(screenshot_path("analytics-dashboard.png")), full_page=True)

        async with page.expect_download() as info:
            await page.click("#export-channel")
        download = await info.value
        text = open(await download.path(), encoding="utf-8").read()
        assert text.startswith("time,hours_streamed,average_viewers")
        watch.check()
        await context.close()
