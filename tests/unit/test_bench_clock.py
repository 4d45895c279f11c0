"""The benchmarks' picture clock: (frame index, send time) survive real libx264 at 720p, the
ladder's 480p encode and scaling to 480p and 360p; garbage and damaged codes read as None;
the browser's JS reader (run under node on pixels drawn here) agrees with the Python one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from benchmarks import clock  # noqa: E402 - after the sys.path entry it needs

T0 = 1_763_700_000_123  # a wall-clock time in ms (Nov 2025), 41 bits
FRAMES = 45


def _encode(
    frames: list[av.VideoFrame], width: int, height: int, preset: str, kbps: int, tune: str | None
) -> list[av.Packet]:
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.framerate = Fraction(30)
    ctx.bit_rate = kbps * 1000
    opts = {
        "preset": preset,
        "x264-params": f"keyint=30:bframes=0:vbv-maxrate={kbps}:vbv-bufsize={kbps * 2}",
    }
    if tune:
        opts["tune"] = tune
    ctx.options = opts
    packets = []
    for f in frames:
        packets += ctx.encode(f)
    packets += ctx.encode(None)
    return packets


def _decode(packets: list[av.Packet]) -> list[av.VideoFrame]:
    dec = av.CodecContext.create("h264", "r")
    out = []
    for p in packets:
        out += dec.decode(p)
    out += dec.decode(None)
    return out


@pytest.fixture(scope="module")
def source() -> list[tuple[int, int, av.VideoFrame]]:
    """720p frames as the publisher makes them: moving texture, the code in the top rows."""
    pic = clock._Picture(1280, 720)
    frames = []
    for i in range(FRAMES):
        yuv = pic.frame(i)
        t = T0 + i * 33 + (i * 7919 % 5)  # irregular times, as a real clock gives
        idx = 1_000_000 + i * 12345  # exercise all 24 bits
        clock.stamp_luma(yuv[:720], idx, t)
        f = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        f.pts = i
        frames.append((idx, t, f))
    return frames


@pytest.fixture(scope="module")
def decoded_720p(source) -> list[av.VideoFrame]:
    """The publisher's encode: ultrafast zerolatency at 3 Mbit/s."""
    packets = _encode([f for _, _, f in source], 1280, 720, "ultrafast", 3000, "zerolatency")
    frames = _decode(packets)
    assert len(frames) == FRAMES
    return frames


def _luma(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="gray")


def test_round_trip_on_raw_pictures() -> None:
    for width, height in [(1280, 720), (854, 480), (640, 360), (426, 240)]:
        img = clock.draw(123_456, T0, width, height)
        assert img.shape == (height, width, 3)
        assert clock.read(img) == (123_456, T0)
    assert clock.read(clock.draw(2**24 - 1, 2**48 - 1, 1280, 720)) == (2**24 - 1, 2**48 - 1)
    assert clock.read(clock.draw(0, 0, 1280, 720)) == (0, 0)


def test_round_trip_through_libx264_at_720p(source, decoded_720p) -> None:
    for (idx, t, _), frame in zip(source, decoded_720p, strict=False):
        assert clock.read(_luma(frame)) == (idx, t)
        assert clock.read(frame.to_ndarray(format="rgb24")) == (idx, t)
    # A yuv420p array as a whole (the luma rows come first) reads too.
    idx, t, _ = source[0]
    assert clock.read(decoded_720p[0].to_ndarray(format="yuv420p")) == (idx, t)


@pytest.mark.parametrize("width,height", [(854, 480), (640, 360)])
def test_round_trip_after_scaling(source, decoded_720p, width, height) -> None:
    for (idx, t, _), frame in zip(source, decoded_720p, strict=False):
        scaled = frame.reformat(width=width, height=height, format="yuv420p")
        assert clock.read(_luma(scaled)) == (idx, t)


def test_round_trip_through_the_480p_rung(source, decoded_720p) -> None:
    """As the ladder does it: decoded 720p scaled to 480p and encoded again (veryfast,
    1200 kbit/s), then decoded once more — and scaled down to 360p by a player."""
    scaled = [f.reformat(width=854, height=480, format="yuv420p") for f in decoded_720p]
    for i, f in enumerate(scaled):
        f.pts = i
    frames = _decode(_encode(scaled, 854, 480, "veryfast", 1200, None))
    assert len(frames) == FRAMES
    for (idx, t, _), frame in zip(source, frames, strict=False):
        assert clock.read(_luma(frame)) == (idx, t)
        small = frame.reformat(width=640, height=360, format="gray")
        assert clock.read(small.to_ndarray()) == (idx, t)


def test_garbage_reads_as_none() -> None:
    rng = np.random.default_rng(1)
    assert clock.read(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)) is None
    assert clock.read(np.full((720, 1280), 128, np.uint8)) is None
    assert clock.read(np.zeros((720, 1280), np.uint8)) is None
    assert clock.read(np.full((720, 1280, 3), 255, np.uint8)) is None
    assert clock.read(np.zeros((10, 64), np.uint8)) is None  # too small to hold a code
    for _ in range(200):
        assert clock.read(rng.integers(0, 256, (48, 640), dtype=np.uint8)) is None


def test_a_damaged_code_reads_as_none() -> None:
    img = clock.draw(77, T0, 1280, 720)
    cell = 1280 // clock.COLS
    for c in [10, 40, 90, 100, 120]:  # index, time, CRC and stop cells
        bad = img.copy()
        r, col = divmod(c, clock.COLS)
        block = bad[r * cell : (r + 1) * cell, col * cell : (col + 1) * cell]
        block[:] = 255 - block
        assert clock.read(bad) is None, c


def test_js_reader_agrees(tmp_path: Path) -> None:
    """READ_JS under node, with a stub canvas whose pixels are a decoded-and-scaled frame."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (make run installs it for hls.js)")
    cases = []
    for idx, t, w, h in [
        (5, T0, 1280, 720),
        (9_999_999, T0 + 1, 854, 480),
        (123, T0 + 2, 640, 360),
    ]:
        img = clock.draw(idx, t, 1280, 720)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(
            width=w, height=h, format="rgb24"
        )
        rgb = frame.to_ndarray()
        band = rgb[: -(-w * clock.ROWS // clock.COLS)]
        rgba = np.concatenate([band, np.full(band.shape[:2] + (1,), 255, np.uint8)], axis=2)
        cases.append({"w": w, "h": h, "rgba": rgba.reshape(-1).tolist(), "want": [idx, t]})
    cases.append({"w": 640, "h": 360, "rgba": [128] * (640 * 20 * 4), "want": None})
    script = tmp_path / "read.js"
    script.write_text(
        "const READ = " + clock.READ_JS.strip() + ";\n"
        "const cases = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));\n"
        "const out = [];\n"
        "for (const c of cases) {\n"
        "  const data = Uint8ClampedArray.from(c.rgba);\n"
        "  global.window = {aethexPlayer: {video: {videoWidth: c.w, videoHeight: c.h,"
        " currentTime: 0}}};\n"
        "  global.document = {createElement: () => ({width: 0, height: 0, getContext: () => ({\n"
        "    drawImage: () => {}, getImageData: (x, y, w, h) => ({data: data.subarray(0,"
        " w * h * 4)})})})};\n"
        "  const r = READ();\n"
        "  out.push(r.error ? null : [r.index, r.t]);\n"
        "}\n"
        "console.log(JSON.stringify(out));\n"
    )
    data = tmp_path / "cases.json"
    data.write_text(json.dumps(cases))
    result = subprocess.run(
        [node, str(script), str(data)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [c["want"] for c in cases]
