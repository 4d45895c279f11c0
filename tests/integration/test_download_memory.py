"""An MP4 download is streamed, not held: what it costs a real ``aethex serve`` in memory.

The recording is 1080p H.264 + AAC encoded by the ffmpeg CLI and cut into segments by the
product's packager (``benchmarks.lib.vod_media``); its one 2 s segment is repeated until the
rendition holds well over 100 MB, so the file is many times the budget. The server's peak RSS
(VmHWM, reset just before) may grow by the plan and a few read blocks, never by the file,
with one download and with two at once.
"""

from __future__ import annotations

import asyncio
import math
import shutil
from pathlib import Path

import aiohttp
import pytest
from serve_process import serve_process

from benchmarks.lib.clips_vod_download import seed_video
from benchmarks.lib.vod_media import Rung, encode_source, package
from transcode.hls import RecordedSegment, master_playlist, write_vod

pytestmark = pytest.mark.integration

FILE_MB = 120
BUDGET_MIB = 40


def big_recording(stream_dir: Path, work: Path) -> int:
    """A 1080p rendition of at least FILE_MB; returns its size in bytes."""
    source = encode_source(work / "src.mp4", Rung("1080p", 1920, 1080, 40000), 2.0)
    segments, info = package(source, stream_dir, "1080p")
    folder = stream_dir / "1080p"
    first = folder / "seg0.m4s"
    copies = math.ceil(FILE_MB * 1e6 / first.stat().st_size)
    recorded = []
    for n in range(copies):
        if n:
            shutil.copyfile(first, folder / f"seg{n}.m4s")
        recorded.append(RecordedSegment(n, segments[0].duration, False, "init.mp4"))
    for extra in segments[1:]:  # a short tail segment, if the packager made one
        (folder / f"seg{extra.msn}.m4s").unlink()
    write_vod(stream_dir, {"1080p": recorded}, master_playlist([info]), 2.0)
    return sum(p.stat().st_size for p in folder.glob("seg*.m4s"))


async def download(http: aiohttp.ClientSession, url: str) -> int:
    got = 0
    async with http.get(url) as r:
        assert r.status == 200, await r.text()
        async for block in r.content.iter_chunked(1 << 16):
            got += len(block)
        assert got == int(r.headers["Content-Length"])
    return got


async def test_downloads_are_streamed_not_held(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "work").mkdir()
    stream_id = await seed_video(data, 60.0)
    stream_dir = data / "streams" / str(stream_id)
    size = await asyncio.to_thread(big_recording, stream_dir, tmp_path / "work")
    assert size >= FILE_MB * 1e6
    env = {"AETHEX_TRANSCODE__ENABLED": "false", "AETHEX_LOG__LEVEL": "warning"}
    async with serve_process(env, data) as server, aiohttp.ClientSession() as http:
        url = f"{server.base}/videos/{stream_id}/download"
        async with http.head(url) as r:  # warm-up: imports, the first thread, the plan
            assert r.status == 200
        before = server.reset_peak_rss()
        got = await download(http, url)
        one = (server.status_kib("VmHWM") - before) / 1024
        before = server.reset_peak_rss()
        both = await asyncio.gather(download(http, url), download(http, url))
        two = (server.status_kib("VmHWM") - before) / 1024
    print(f"peak RSS growth: one {got / 1e6:.0f} MB download {one:.0f} MiB, two {two:.0f} MiB")
    assert got > 0.95 * size and both == [got, got]  # the segments less their moofs
    assert one < BUDGET_MIB, f"one download raised the peak RSS by {one:.0f} MiB"
    assert two < BUDGET_MIB, f"two downloads at once raised the peak RSS by {two:.0f} MiB"
