"""Clip/VOD benchmark, part "download": the MP4 download of a 10-minute 1080p rendition against
``ffmpeg -i index.m3u8 -c copy -movflags +faststart out.mp4`` of the same HLS recording.

The recording is made at run time the way the server leaves one (``benchmarks.lib.vod_media``):
20 s of 1080p30 H.264 at 6 Mbit/s with AAC, encoded once and looped with ``-c copy`` to the
length, then cut into 2 s fMP4 segments by the product's packager. A real ``aethex serve``
process serves it as an archived past broadcast; a client downloads
``/videos/{id}/download`` over loopback HTTP into a file, the way a browser saves it. Both
sides write a faststart MP4 of the same samples to the same disk; they alternate, several
runs each; medians of wall time give throughput (output MB/s) and the ratio ours/ffmpeg.
The remux alone (planner and reader in this process, no HTTP) is shown too.
Goal (issue 13): throughput at least 0.8x ffmpeg's.

    python -m benchmarks.lib.clips_vod_download [--quick]    (--quick: 1 minute, 2 runs)
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.lib.server import ServerProcess, free_port
from benchmarks.lib.vod_media import Rung, encode_source, package
from storage import Database, queries, upgrade
from storage.models import StreamStatus
from transcode.hls import master_playlist, write_vod
from transcode.remux import plan_mp4, rendition_groups

GOAL = 0.8
RUNG = Rung("1080p", 1920, 1080, 6000)
LOOPED = 20.0  # seconds encoded once, then copied to the length


def make_recording(stream_dir: Path, work: Path, seconds: float) -> None:
    """A ``seconds`` long 1080p recording under ``stream_dir`` (master.m3u8, 1080p/...)."""
    source = encode_source(work / "once.mp4", RUNG, min(LOOPED, seconds))
    looped = work / "looped.mp4"
    loops = max(0, int(seconds // LOOPED))
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops), "-i", str(source)]
        + ["-c", "copy", "-t", f"{seconds}", str(looped)],
        check=True,
    )
    segments, info = package(looped, stream_dir, RUNG.name)
    write_vod(stream_dir, {RUNG.name: segments}, master_playlist([info]), 2.0)


async def seed_video(data_dir: Path, seconds: float) -> int:
    """The database of a server with one archived broadcast whose channel allows downloads."""
    url = f"sqlite+aiosqlite:///{data_dir / 'aethex.db'}"
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    await db.connect()
    try:
        async with db.session() as session:
            await queries.create_user(session, "bench", "bench@example.test", None)
            channel = await queries.create_channel(session, "bench", "bench-vod")
            channel.allow_downloads = True
            now = datetime.now(UTC)
            row = await queries.start_stream(session, channel.id, now, title="Ten minutes")
            await queries.end_stream(session, row.id, now, StreamStatus.ARCHIVED)
            row.vod_available, row.vod_duration_seconds = True, seconds
            row.vod_path = f"streams/{row.id}/master.m3u8"
            await session.commit()
            return row.id
    finally:
        await db.dispose()


def _download(port: int, path: str, out: Path) -> tuple[float, int]:
    """GET into a file, reading as fast as the server sends; (seconds, bytes)."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", path)
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status} {response.read()[:200]!r}")
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    total = 0
    with open(out, "wb") as f:
        while n := response.readinto(buffer):
            f.write(view[:n])
            total += n
    conn.close()
    expected = int(response.getheader("Content-Length") or -1)
    if total != expected:
        raise RuntimeError(f"got {total} bytes of {expected}")
    return time.perf_counter() - t0, total


def _ffmpeg(playlist: Path, out: Path) -> tuple[float, int]:
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(playlist), "-c", "copy"]
        + ["-movflags", "+faststart", str(out)],
        check=True,
    )
    return time.perf_counter() - t0, out.stat().st_size


def _remux(stream_dir: Path, out: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    plan = plan_mp4(rendition_groups(stream_dir, RUNG.name))
    with plan.reader() as reader, open(out, "wb") as f:
        for block in reader.chunks():
            f.write(block)
    return time.perf_counter() - t0, plan.size


def _rate(runs: list[tuple[float, int]]) -> tuple[float, float]:
    """(median seconds, MB/s at that median)."""
    wall = statistics.median(r[0] for r in runs)
    return wall, runs[0][1] / wall / 1e6


def run(quick: bool) -> list[str]:
    seconds, runs = (60.0, 2) if quick else (600.0, 5)
    with tempfile.TemporaryDirectory(prefix="clips-download-") as tmp:
        root = Path(tmp)
        data = root / "data"
        (root / "work").mkdir()
        data.mkdir()
        t0 = time.perf_counter()
        stream_id = asyncio.run(seed_video(data, seconds))
        stream_dir = data / "streams" / str(stream_id)
        make_recording(stream_dir, root / "work", seconds)
        shutil.rmtree(root / "work")
        made = time.perf_counter() - t0
        playlist = stream_dir / RUNG.name / "index.m3u8"
        recorded = sum(p.stat().st_size for p in (stream_dir / RUNG.name).iterdir())
        server = ServerProcess(
            {"AETHEX_TRANSCODE__ENABLED": "false"},
            data_dir=data,
            http_port=free_port(),
            rtmp_port=free_port(),
        )
        ours: list[tuple[float, int]] = []
        ref: list[tuple[float, int]] = []
        alone: list[tuple[float, int]] = []
        try:
            server.wait_ready()
            path = f"/videos/{stream_id}/download?rendition={RUNG.name}"
            _download(server.http_port, path, root / "warm.mp4")  # page cache, first plan
            (root / "warm.mp4").unlink()
            for _ in range(runs):
                ours.append(_download(server.http_port, path, root / "ours.mp4"))
                (root / "ours.mp4").unlink()
                ref.append(_ffmpeg(playlist, root / "ffmpeg.mp4"))
                (root / "ffmpeg.mp4").unlink()
                alone.append(_remux(stream_dir, root / "remux.mp4"))
                (root / "remux.mp4").unlink()
        finally:
            server.stop()
    ow, orate = _rate(ours)
    fw, frate = _rate(ref)
    aw, arate = _rate(alone)
    ratio = orate / frate
    return [
        f"MP4 download: {seconds / 60:.0f} min 1080p30 rendition ({recorded / 1e6:.0f} MB of"
        f" fMP4 segments, made in {made:.0f} s), {runs} runs each, medians, {os.cpu_count()} cores",
        f"  ours (GET /videos/{{id}}/download over loopback to a file): {ow:.2f} s,"
        f" {orate:.0f} MB/s ({ours[0][1] / 1e6:.0f} MB)",
        f"  ffmpeg -c copy -movflags +faststart: {fw:.2f} s, {frate:.0f} MB/s"
        f" ({ref[0][1] / 1e6:.0f} MB)",
        f"  remux alone (transcode.remux to a file, no HTTP): {aw:.2f} s, {arate:.0f} MB/s",
        f"  throughput ratio ours/ffmpeg: {ratio:.2f}; goal >= {GOAL}:"
        f" {'met' if ratio >= GOAL else 'MISSED'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1-minute rendition, 2 runs")
    for line in run(parser.parse_args().quick):
        print(line, flush=True)


if __name__ == "__main__":
    main()
