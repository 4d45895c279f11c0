"""Clip benchmark, part "cut": a 30 s clip from a 1080p VOD, our smart cut against the ffmpeg
CLI re-encoding the whole clip (``ffmpeg -ss A -to B -i INPUT -c:v libx264 -c:a aac``).

The VOD is made at run time the way the server records one (``benchmarks.lib.vod_media``):
2 minutes of 1080p30 H.264 with B-frames and an IDR every 2 s, AAC audio, through the
product's packager. The clip starts and ends mid-GOP, so our cut re-encodes both edges (the
B-frames make the tail's leading frames uncopyable too): the work a real clip costs. Both sides
run in this process's run, alternating, several times. ffmpeg's INPUT is the rendition's
init section and segments concatenated into one fragmented MP4 (the same bytes, made before
timing): ffmpeg 5.1's HLS demuxer cannot seek in fMP4 playlists (``-ss`` before ``-i
index.m3u8`` gives an empty output, ours and ffmpeg's own ``-hls_segment_type fmp4`` alike).
Medians of wall time and CPU time
(ours: this process's; ffmpeg: the child's) are printed with the ratio ours/ffmpeg.
Goal (issue 13): our wall time at most 0.3x ffmpeg's.

    python -m benchmarks.lib.clips_vod_cut [--quick]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.lib.vod_media import Rung, make_vod
from transcode.smart_cut import cut_clip, renditions_from_master

GOAL = 0.3


def _ours(
    master: Path, start: float, end: float, out: Path
) -> tuple[float, float, int, int, float]:
    renditions = renditions_from_master(master)
    shutil.rmtree(out, ignore_errors=True)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = cut_clip(renditions, start, end, out)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return wall, cpu, result.copied_video_frames, result.reencoded_video_frames, result.duration


def _whole_file(playlist: Path, out: Path) -> Path:
    """init + every segment of a media playlist, in order, as one fragmented MP4."""
    lines = [ln.strip() for ln in playlist.read_text().splitlines()]
    names = [ln.split('URI="', 1)[1].split('"')[0] for ln in lines if ln.startswith("#EXT-X-MAP")]
    names += [ln for ln in lines if ln and not ln.startswith("#")]
    with open(out, "wb") as f:
        for name in names:
            f.write((playlist.parent / name).read_bytes())
    return out


def _ffmpeg(source: Path, start: float, end: float, out: Path) -> tuple[float, float]:
    out.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-ss",
            f"{start}",
            "-to",
            f"{end}",
            "-i",
            str(source),
            "-c:v",
            "libx264",
            "-c:a",
            "aac",
            str(out),
        ],
        check=True,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _probe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip())


def run(quick: bool, vod: Path | None = None) -> list[str]:
    """``vod``: a recording made earlier by ``make_vod`` (kept between runs while tuning)."""
    seconds, clip, runs = (45.0, 10.0, 1) if quick else (120.0, 30.0, 3)
    start = 31.5  # mid-GOP (IDRs every 2 s)
    end = start + clip + 0.4
    with tempfile.TemporaryDirectory(prefix="clips-cut-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        if vod is None:
            rung = Rung("1080p", 1920, 1080, 6000)
            master = make_vod(root / "vod", [rung], seconds, bframes=2)
        else:
            master = vod / "master.m3u8"
            seconds = sum(s.duration for s in renditions_from_master(master)[0].segments)
        made = time.perf_counter() - t0
        whole = _whole_file(master.parent / "1080p" / "index.m3u8", root / "whole.mp4")
        ours: list[tuple[float, float, int, int, float]] = []
        ref: list[tuple[float, float]] = []
        for _ in range(runs):
            ours.append(_ours(master, start, end, root / "ours"))
            ref.append(_ffmpeg(whole, start, end, root / "ffmpeg.mp4"))
        ours_mp4 = _probe_duration(root / "ours" / "clip.mp4")
        ref_mp4 = _probe_duration(root / "ffmpeg.mp4")
    ow = statistics.median(r[0] for r in ours)
    oc = statistics.median(r[1] for r in ours)
    fw = statistics.median(r[0] for r in ref)
    fc = statistics.median(r[1] for r in ref)
    _, _, copied, reencoded, duration = ours[-1]
    ratio = ow / fw
    return [
        f"clip cut: {end - start:.1f} s clip of a {seconds:.0f} s 1080p30 VOD (B-frames, 2 s GOPs,"
        f" made in {made:.0f} s), {runs} run(s) each, medians, {os.cpu_count()} cores",
        f"  ours (smart cut, MP4 + HLS + thumbnail): {ow:.2f} s wall, {oc:.2f} s CPU;"
        f" {copied} frames copied, {reencoded} re-encoded; clip {duration:.3f} s"
        f" (ffprobe {ours_mp4:.3f} s)",
        f"  ffmpeg -ss -to -c:v libx264 -c:a aac: {fw:.2f} s wall, {fc:.2f} s CPU"
        f" (ffprobe {ref_mp4:.3f} s)",
        f"  ratio ours/ffmpeg: wall {ratio:.3f}, CPU {oc / fc:.3f}; goal wall <= {GOAL}:"
        f" {'met' if ratio <= GOAL else 'MISSED'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 10 s clip of a 45 s VOD, 1 run")
    parser.add_argument("--vod", type=Path, help="cut this recording instead of making one")
    args = parser.parse_args()
    for line in run(args.quick, args.vod):
        print(line, flush=True)


if __name__ == "__main__":
    main()
