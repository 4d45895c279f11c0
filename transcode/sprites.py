"""Scrubbing previews of a recording: thumbnails every few seconds packed into sprite JPEGs,
with a WebVTT index whose cues point at a tile (``sprite-0.jpg#xywh=x,y,w,h``), the form
players' timeline previews read.

Made once when a stream is archived, from the lowest rendition of the VOD (the cheapest to
decode, and a 160-pixel tile needs no more). Segments start with a keyframe, so each
thumbnail costs decoding from the start of the segment holding its time, never a seek; every
segment is decoded at most once, in order, and at most ``max_thumbnails`` are taken (a longer
recording spaces them out). Blocking work for a thread: the server runs it off the loop with
bounded concurrency. The index is written last, so a VOD with an index has all its sheets.
"""

from __future__ import annotations

import io
import math
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image

from transcode.hls import write_file_atomic

PREVIEW_DIR = "previews"
INDEX_NAME = "previews.vtt"
_SHEET_RE = re.compile(r"sprite-(0|[1-9][0-9]{0,5})\.jpg")
_STREAM_INF_RE = re.compile(r"#EXT-X-STREAM-INF:(.*)")
_MAP_RE = re.compile(r'#EXT-X-MAP:.*?URI="([^"]*)"')
_SAFE_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def sheet_name(index: int) -> str:
    return f"sprite-{index}.jpg"


def is_preview_name(name: str) -> bool:
    """Whether ``name`` is one a preview directory may hold (what URLs may ask for)."""
    return name == INDEX_NAME or _SHEET_RE.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class PreviewOptions:
    interval: float = 5.0
    width: int = 160
    columns: int = 10
    rows: int = 10
    quality: int = 70
    max_thumbnails: int = 10000


@dataclass(frozen=True, slots=True)
class Previews:
    """What was written: the index, the sheets, the tile size and the spacing used."""

    index: Path
    sheets: int
    thumbnails: int
    tile_width: int
    tile_height: int
    interval: float
    duration: float


@dataclass(frozen=True, slots=True)
class _Segment:
    path: Path
    init: Path
    start: float
    duration: float


def lowest_rendition(vod_dir: Path) -> str | None:
    """The master playlist's variant with the fewest pixels (then bits): its directory name."""
    try:
        lines = (vod_dir / "master.m3u8").read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    best: tuple[int, int, str] | None = None
    for k, line in enumerate(lines):
        m = _STREAM_INF_RE.match(line.strip())
        if m is None or k + 1 >= len(lines):
            continue
        attrs = m.group(1)
        size = re.search(r"RESOLUTION=(\d+)x(\d+)", attrs)
        rate = re.search(r"(?<![-A-Z])BANDWIDTH=(\d+)", attrs)
        pixels = int(size.group(1)) * int(size.group(2)) if size else 0
        bits = int(rate.group(1)) if rate else 0
        name, _, rest = lines[k + 1].strip().partition("/")
        if rest != "index.m3u8" or not _SAFE_NAME_RE.fullmatch(name):
            continue
        if best is None or (pixels, bits) < best[:2]:
            best = (pixels, bits, name)
    return best[2] if best else None


def _segments(directory: Path) -> list[_Segment]:
    """The media playlist's segments with their start times and init sections."""
    out: list[_Segment] = []
    init: Path | None = None
    duration: float | None = None
    start = 0.0
    for raw in (directory / "index.m3u8").read_text().splitlines():
        line = raw.strip()
        m = _MAP_RE.match(line)
        if m is not None and _SAFE_NAME_RE.fullmatch(m.group(1)):
            init = directory / m.group(1)
        elif line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",")[0])
        elif line and not line.startswith("#") and duration is not None and init is not None:
            if _SAFE_NAME_RE.fullmatch(line):
                out.append(_Segment(directory / line, init, start, duration))
            start += duration
            duration = None
    return out


def _frames_at(segment: _Segment, offsets: list[float]) -> Iterator[tuple[float, av.VideoFrame]]:
    """For each offset (seconds into the segment, ascending) the first frame at or past it
    (the segment's last frame for offsets beyond its end).

    A segment that cannot be read or decoded yields nothing: a recording made while the disk
    was full lacks files its playlist names, and its previews then skip that stretch instead
    of failing whole."""
    try:
        data = segment.init.read_bytes() + segment.path.read_bytes()
        yield from _decoded_at(data, offsets)
    except (OSError, av.FFmpegError):
        return


def _decoded_at(data: bytes, offsets: list[float]) -> Iterator[tuple[float, av.VideoFrame]]:
    with av.open(io.BytesIO(data), mode="r", format="mp4") as container:
        if not container.streams.video:
            return
        stream = container.streams.video[0]
        first: float | None = None
        last = None
        pending = list(offsets)
        for frame in container.decode(stream):
            if frame.pts is None or frame.time_base is None:
                continue
            t = float(frame.pts * frame.time_base)
            first = t if first is None else first
            last = frame
            while pending and t - first >= pending[0] - 1e-6:
                yield pending.pop(0), frame
            if not pending:
                return
        if last is not None:
            for offset in pending:
                yield offset, last


def _cue_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def build_previews(
    vod_dir: Path, options: PreviewOptions, *, fsync: bool = False
) -> Previews | None:
    """Sprites and their index under ``vod_dir/previews`` (replacing any earlier ones); None
    when the recording has no video to take them from, or was deleted meanwhile."""
    try:
        return _build(vod_dir, options, fsync)
    except FileNotFoundError:
        if vod_dir.exists():
            raise
        return None  # the recording was deleted while its previews were being made


def _build(vod_dir: Path, options: PreviewOptions, fsync: bool) -> Previews | None:
    rendition = lowest_rendition(vod_dir)
    if rendition is None:
        return None
    segments = _segments(vod_dir / rendition)
    duration = sum(s.duration for s in segments)
    if not segments or duration <= 0:
        return None
    interval = max(options.interval, duration / options.max_thumbnails)
    count = max(1, math.ceil(duration / interval - 1e-9))
    times = [i * interval for i in range(count)]

    out = vod_dir / PREVIEW_DIR
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()  # never parents: a deleted recording must stay deleted
    per_sheet = options.columns * options.rows
    tile: tuple[int, int] | None = None
    sheet: Image.Image | None = None
    cues: list[str] = ["WEBVTT", ""]
    taken = sheets = 0

    def flush() -> None:
        nonlocal sheet, sheets
        if sheet is None or tile is None:
            return
        used_rows = math.ceil((taken - sheets * per_sheet) / options.columns)
        image = sheet.crop((0, 0, sheet.width, used_rows * tile[1]))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=options.quality)
        write_file_atomic(out / sheet_name(sheets), buffer.getvalue(), fsync=fsync)
        sheets += 1
        sheet = None

    wanted = iter(times)
    target = next(wanted, None)
    for segment in segments:
        offsets: list[float] = []
        while target is not None and target < segment.start + segment.duration:
            offsets.append(max(0.0, target - segment.start))
            target = next(wanted, None)
        if not offsets:
            continue
        for offset, frame in _frames_at(segment, offsets):
            if tile is None:
                height = round(options.width * frame.height / max(1, frame.width) / 2) * 2
                tile = (options.width, max(2, height))
            if sheet is None:
                sheet = Image.new("RGB", (tile[0] * options.columns, tile[1] * options.rows))
            slot = taken % per_sheet
            x, y = (slot % options.columns) * tile[0], (slot // options.columns) * tile[1]
            sheet.paste(frame.to_image(width=tile[0], height=tile[1]), (x, y))
            begin = segment.start + offset
            end = min(duration, begin + interval)
            cues += [
                f"{_cue_time(begin)} --> {_cue_time(end)}",
                f"{sheet_name(sheets)}#xywh={x},{y},{tile[0]},{tile[1]}",
                "",
            ]
            taken += 1
            if taken % per_sheet == 0:
                flush()
    flush()
    if tile is None or taken == 0:
        shutil.rmtree(out, ignore_errors=True)
        return None
    index = out / INDEX_NAME
    write_file_atomic(index, "\n".join(cues).encode(), fsync=fsync)
    return Previews(index, sheets, taken, tile[0], tile[1], interval, duration)
