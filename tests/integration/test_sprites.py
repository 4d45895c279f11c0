"""Scrubbing previews from a recording (``transcode.sprites``), against the ffmpeg CLI.

The recording is a real fMP4 HLS VOD the ffmpeg CLI writes (two variants: the previews must
come from the smaller); each tile is checked against the frame ffmpeg itself decodes at the
cue's time, and the index against the rules a player needs: cues from 0 to the end without a
gap, each naming a tile inside its sprite.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageStat

from tests.conftest import require_ffmpeg
from transcode import sprites
from transcode.sprites import INDEX_NAME, PREVIEW_DIR, PreviewOptions, build_previews

pytestmark = pytest.mark.integration

SECONDS = 13


def _variant(out: Path, name: str, size: str) -> None:
    (out / name).mkdir(parents=True)
    subprocess.run(
        [
            require_ffmpeg(),
            *("-hide_banner", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30"),
            *("-t", str(SECONDS), "-c:v", "libx264", "-preset", "ultrafast", "-g", "30"),
            *("-pix_fmt", "yuv420p", "-f", "hls", "-hls_time", "2"),
            *("-hls_segment_type", "fmp4", "-hls_playlist_type", "vod"),
            *("-hls_fmp4_init_filename", "init.mp4"),
            *("-hls_segment_filename", str(out / name / "seg%d.m4s")),
            str(out / name / "index.m3u8"),
        ],
        check=True,
    )


@pytest.fixture(scope="module")
def vod(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vod")
    _variant(out, "360p", "640x360")
    _variant(out, "180p", "320x180")
    (out / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:7\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=900000,RESOLUTION=640x360\n360p/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=320x180\n180p/index.m3u8\n"
    )
    return out


def _cues(text: str) -> list[tuple[float, float, str, tuple[int, int, int, int]]]:
    def seconds(stamp: str) -> float:
        h, m, s = stamp.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    assert text.startswith("WEBVTT\n")
    found = re.findall(
        r"(\d\d:\d\d:\d\d\.\d\d\d) --> (\d\d:\d\d:\d\d\.\d\d\d)\n"
        r"(sprite-\d+\.jpg)#xywh=(\d+),(\d+),(\d+),(\d+)",
        text,
    )
    return [
        (seconds(a), seconds(b), name, (int(x), int(y), int(w), int(h)))
        for a, b, name, x, y, w, h in found
    ]


def _reference(vod: Path, at: float, size: tuple[int, int]) -> Image.Image:
    """The frame the ffmpeg CLI decodes at ``at`` seconds of the small variant, scaled."""
    png = subprocess.run(
        [
            require_ffmpeg(),
            *("-hide_banner", "-loglevel", "error"),
            *("-i", str(vod / "180p" / "index.m3u8"), "-ss", f"{at:.3f}"),
            *("-frames:v", "1", "-s", f"{size[0]}x{size[1]}", "-f", "image2pipe"),
            *("-c:v", "png", "-"),
        ],
        check=True,
        capture_output=True,
    ).stdout
    return Image.open(io.BytesIO(png)).convert("RGB")


def _difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def test_sprites_and_index_cover_the_recording(vod: Path) -> None:
    made = build_previews(vod, PreviewOptions(interval=1.0, width=160, columns=4, rows=3))
    assert made is not None
    assert (made.tile_width, made.tile_height) == (160, 90)
    assert made.duration == pytest.approx(SECONDS, abs=0.05)
    assert made.thumbnails == SECONDS and made.sheets == 2  # 12 a sheet
    out = vod / PREVIEW_DIR
    assert sorted(p.name for p in out.iterdir()) == [INDEX_NAME, "sprite-0.jpg", "sprite-1.jpg"]

    cues = _cues((out / INDEX_NAME).read_text())
    assert len(cues) == SECONDS
    assert cues[0][0] == 0.0 and cues[-1][1] == pytest.approx(made.duration, abs=0.001)
    for (_, end, _, _), (start, _, _, _) in zip(cues, cues[1:], strict=False):
        assert start == pytest.approx(end, abs=0.001)  # no gap, no overlap
    sheets = {name: Image.open(out / name) for name in ("sprite-0.jpg", "sprite-1.jpg")}
    assert sheets["sprite-0.jpg"].size == (640, 270)
    assert sheets["sprite-1.jpg"].size == (640, 90)  # 1 tile left: one row, cropped
    for _, _, name, (x, y, w, h) in cues:
        sheet = sheets[name]
        assert (w, h) == (160, 90)
        assert 0 <= x and x + w <= sheet.width and 0 <= y and y + h <= sheet.height

    # Each tile shows its cue's moment: closest to ffmpeg's frame there, not to one 1 s off.
    for k in (0, 3, 9, 12):
        start, _, name, (x, y, w, h) = cues[k]
        tile = sheets[name].convert("RGB").crop((x, y, x + w, y + h))
        here = _difference(tile, _reference(vod, start, (w, h)))
        other = _difference(tile, _reference(vod, (start + 1) % SECONDS, (w, h)))
        assert here < other and here < 12, (k, here, other)


def test_a_long_recording_spaces_thumbnails_out_and_a_rerun_replaces(vod: Path) -> None:
    made = build_previews(vod, PreviewOptions(interval=1.0, max_thumbnails=4, columns=10))
    assert made is not None and made.thumbnails == 4 and made.sheets == 1
    assert made.interval == pytest.approx(SECONDS / 4, abs=0.05)
    out = vod / PREVIEW_DIR
    assert sorted(p.name for p in out.iterdir()) == [INDEX_NAME, "sprite-0.jpg"]
    cues = _cues((out / INDEX_NAME).read_text())
    assert cues[-1][1] == pytest.approx(made.duration, abs=0.001)


def test_no_video_no_previews(tmp_path: Path) -> None:
    assert build_previews(tmp_path, PreviewOptions()) is None
    (tmp_path / "master.m3u8").write_text("#EXTM3U\n")
    assert build_previews(tmp_path, PreviewOptions()) is None
    assert not (tmp_path / PREVIEW_DIR).exists()


def test_a_recording_deleted_meanwhile_stays_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner deletes the video while its previews are being made: nothing comes back."""
    directory = tmp_path / "gone"
    _variant(directory, "180p", "320x180")
    (directory / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=320x180\n180p/index.m3u8\n"
    )
    real = sprites._segments

    def delete_then_list(path: Path) -> list[Any]:
        found = real(path)
        shutil.rmtree(directory)  # as storage.videos deletes a recording
        return found

    monkeypatch.setattr(sprites, "_segments", delete_then_list)
    assert build_previews(directory, PreviewOptions()) is None
    assert not directory.exists()


def test_a_recording_missing_files_gets_previews_of_what_is_there(tmp_path: Path) -> None:
    """A recording made while the disk was full names files that were never written: the
    previews skip that stretch instead of failing (and the server logging a traceback)."""
    directory = tmp_path / "holes"
    _variant(directory, "180p", "320x180")
    (directory / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=320x180\n180p/index.m3u8\n"
    )
    (directory / "180p" / "seg1.m4s").unlink()  # 2 s to 4 s were never written
    made = build_previews(directory, PreviewOptions(interval=1.0, columns=4, rows=4))
    assert made is not None and made.thumbnails == SECONDS - 2
    starts = [start for start, _, _, _ in _cues((directory / PREVIEW_DIR / INDEX_NAME).read_text())]
    assert not any(2.0 <= s < 4.0 for s in starts) and len(starts) == SECONDS - 2

    (directory / "180p" / "init.mp4").unlink()  # no segment can be decoded at all
    assert build_previews(directory, PreviewOptions()) is None
    assert not (directory / PREVIEW_DIR).exists()  # no previews of nothing
