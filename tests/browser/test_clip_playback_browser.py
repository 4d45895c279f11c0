"""Smart-cut clips play in real Chromium: the HLS set through hls.js (Media Source Extensions)
at each rendition, and the progressive MP4 in a plain ``<video src>``.

The clip's avcC carries two SPS/PPS pairs (the source's and the re-encoder's, under distinct
ids) and the stream switches between them at each IDR; ffmpeg decodes that, and this test
shows the browser's demuxer and decoder do too: every frame decoded, none corrupted, playback
to the end. The files are served by a bare static aiohttp app, as the server would send them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from benchmarks.lib.vod_media import Rung, make_vod
from tests.browser.browser_support import HLS_JS, browser, screenshot_path  # noqa: F401
from transcode.smart_cut import cut_clip, renditions_from_master

pytestmark = pytest.mark.browser

PAGE = """<!doctype html><meta charset="utf-8"><title>clip</title>
<script src="/hls.min.js"></script>
<video id="v" muted playsinline width="320" height="180"></video>
<script>
window.result = null;
window.play = (src, level) => {
  const v = document.getElementById('v');
  const done = (extra) => {
    const q = v.getVideoPlaybackQuality();
    window.result = Object.assign({
      time: v.currentTime, duration: v.duration, height: v.videoHeight,
      total: q.totalVideoFrames, dropped: q.droppedFrames, corrupted: q.corruptedVideoFrames,
      error: v.error ? v.error.code : null,
    }, extra || {});
  };
  v.addEventListener('ended', () => done());
  v.addEventListener('error', () => done({failed: true}));
  if (level === null) { v.src = src; v.play(); return; }
  const hls = new Hls({capLevelToPlayerSize: false, startLevel: level});
  hls.on(Hls.Events.ERROR, (e, data) => { if (data.fatal) done({failed: data.details}); });
  hls.on(Hls.Events.MANIFEST_PARSED, () => { hls.currentLevel = level; v.play(); });
  hls.loadSource(src);
  hls.attachMedia(v);
};
</script>"""


async def _serve(root: Path) -> tuple[web.AppRunner, str]:
    app = web.Application()

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app.router.add_get("/", page)

    async def hls_js(_: web.Request) -> web.FileResponse:
        return web.FileResponse(HLS_JS)

    app.router.add_get("/hls.min.js", hls_js)
    app.router.add_static("/clip/", root)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _play(chromium: Any, base: str, src: str, level: int | None) -> dict[str, Any]:
    page = await chromium.new_page()
    try:
        await page.goto(base + "/")
        await page.evaluate("([src, level]) => window.play(src, level)", [src, level])
        await page.wait_for_function("() => window.result !== null", timeout=60_000)
        if level == 0:
            await page.screenshot(path=str(screenshot_path("clip-hls-end.png")))
        return await page.evaluate("() => window.result")
    finally:
        await page.close()


@pytest.mark.parametrize("bframes", [0, 2])
async def test_clip_plays_in_chromium(
    browser: Any,  # noqa: F811 - the fixture, imported by name
    tmp_path: Path,
    bframes: int,
) -> None:
    rungs = [Rung("180p", 320, 180, 400), Rung("108p", 192, 108, 200)]
    master = make_vod(tmp_path / "vod", rungs, 8, bframes=bframes, gop_seconds=1 + (not bframes))
    out = tmp_path / "clip"
    result = cut_clip(renditions_from_master(master), 1.5, 5.3, out)
    assert result.reencoded_video_frames > 0 and result.copied_video_frames > 0
    runner, base = await _serve(out)
    try:
        runs = {
            "mp4": await _play(browser, base, "/clip/clip.mp4", None),
            # hls.js orders levels by bandwidth, lowest first.
            "hls 108p": await _play(browser, base, "/clip/hls/master.m3u8", 0),
            "hls 180p": await _play(browser, base, "/clip/hls/master.m3u8", 1),
        }
    finally:
        await runner.cleanup()
    heights = {"mp4": 180, "hls 108p": 108, "hls 180p": 180}
    for name, r in runs.items():
        assert not r.get("failed") and r["error"] is None, (name, r)
        assert abs(r["duration"] - 3.8) < 0.1, (name, r)
        assert r["time"] >= r["duration"] - 0.05, (name, r)
        assert r["height"] == heights[name], (name, r)
        assert r["corrupted"] == 0, (name, r)
        # Frames the player decoded: the whole clip, give or take the one shown at the end.
        assert r["total"] >= 114 - 2, (name, r)
