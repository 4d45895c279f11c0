"""Shared helpers of the latency and delivery benchmarks: a clock in the picture, a publisher,
an fMP4 part decoder, a server runner and statistics.

The clock: every published frame carries its own index and the sender's wall-clock time in a
binary barcode drawn over the top rows of the picture, so a reader that has decoded a frame
(PyAV here, a browser canvas through ``READ_JS``) knows exactly when that frame left the
encoder, on the same machine and clock. Geometry is relative to the picture's width (cells of
width/64, square), so the code survives any scaling that keeps the aspect ratio: 720p gives
20 px cells, 480p 13.3 px, 360p 10 px.

Layout, 2 rows x 64 cells read row by row, white = 1:

    8 sync | 24 frame index | 48 t_ms | 32 CRC-32 of the 9 payload bytes | 16 stop

Each cell is read as the mean luma of its central 40 % (edges ring after x264 and scaling),
thresholded half-way between the sync pattern's known black and white cells. Sync, stop and
CRC all have to match, otherwise ``read`` says None: a wrong reading is never reported.

The publisher (``python benchmarks/clock.py publish URL``) runs in its own process: PyAV keeps
the GIL while libavformat blocks on the RTMP socket, which would stall whatever else ran in
that process.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import math
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# -- the barcode ---------------------------------------------------------------------------

COLS = 64
ROWS = 2
CELLS = COLS * ROWS
SYNC = (1, 0, 1, 1, 0, 0, 1, 0)
STOP = (0, 1, 0, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 0, 0)
INDEX_BITS = 24
TIME_BITS = 48
CRC_BITS = 32
assert len(SYNC) + INDEX_BITS + TIME_BITS + CRC_BITS + len(STOP) == CELLS
# Part of a cell that is sampled (the centre), and the least black/white contrast accepted.
SAMPLE = 0.4
MIN_CONTRAST = 48.0
BLACK, WHITE = 16, 235  # limited-range luma, what an encoder expects


def band_height(width: int) -> int:
    """Rows of the picture the code covers (rounded up)."""
    return -(-width * ROWS // COLS)


def _payload(frame_index: int, t_ms: int) -> bytes:
    return (frame_index % (1 << INDEX_BITS)).to_bytes(3, "big") + \
        (t_ms % (1 << TIME_BITS)).to_bytes(6, "big")


def encode_bits(frame_index: int, t_ms: int) -> np.ndarray:
    """The 128 cell values (0/1) for one frame."""
    payload = _payload(frame_index, t_ms)
    crc = zlib.crc32(payload)
    bits = list(SYNC)
    value = int.from_bytes(payload, "big")
    bits += [(value >> (INDEX_BITS + TIME_BITS - 1 - i)) & 1 for i in range(INDEX_BITS + TIME_BITS)]
    bits += [(crc >> (CRC_BITS - 1 - i)) & 1 for i in range(CRC_BITS)]
    bits += STOP
    return np.array(bits, dtype=np.uint8)


def _cell_edges(width: int) -> np.ndarray:
    return np.round(np.arange(COLS + 1) * (width / COLS)).astype(int)


def stamp_luma(y: np.ndarray, frame_index: int, t_ms: int) -> None:
    """Draw the code in place over the top rows of a luma plane (h, w) uint8."""
    width = y.shape[1]
    edges = _cell_edges(width)
    bits = encode_bits(frame_index, t_ms).reshape(ROWS, COLS)
    row_edges = np.round(np.arange(ROWS + 1) * (width / COLS)).astype(int)
    levels = np.where(bits, WHITE, BLACK).astype(np.uint8)
    for r in range(ROWS):
        # Repeat each cell's level over its pixel columns, then over the row's pixel rows.
        line = np.repeat(levels[r], np.diff(edges))
        y[row_edges[r]:row_edges[r + 1], :width] = line


def draw(frame_index: int, t_ms: int, width: int, height: int,
         background: np.ndarray | None = None) -> np.ndarray:
    """An RGB picture (height, width, 3) uint8 with the code over its top rows; the rest is
    ``background`` (same shape) or mid grey."""
    if background is None:
        img = np.full((height, width, 3), 128, np.uint8)
    else:
        img = np.array(background, dtype=np.uint8, copy=True)
    y = np.zeros((band_height(width), width), np.uint8)
    stamp_luma(y, frame_index, t_ms)
    img[: y.shape[0], :, :] = y[:, :, None]
    return img


def _luma(image: np.ndarray, rows: int) -> np.ndarray:
    """The top ``rows`` rows as float luma, from (h, w) luma/gray or (h, w, 3|4) RGB(A)."""
    top = image[:rows]
    if top.ndim == 2:
        return top.astype(np.float32)
    if top.ndim == 3 and top.shape[2] in (3, 4):
        t = top[..., :3].astype(np.float32)
        return t[..., 0] * 0.299 + t[..., 1] * 0.587 + t[..., 2] * 0.114
    raise ValueError(f"expected (h, w) luma or (h, w, 3) RGB, got shape {image.shape}")


def read_cells(image: np.ndarray) -> np.ndarray | None:
    """Mean luma of the centre of each of the 128 cells, or None if the picture is too small."""
    width = image.shape[1]
    cell = width / COLS
    if cell < 4 or image.shape[0] < band_height(width):
        return None
    lum = _luma(image, band_height(width))
    margin = cell * (1 - SAMPLE) / 2
    out = np.empty(CELLS, np.float32)
    for r in range(ROWS):
        y0, y1 = int(r * cell + margin + 0.5), int((r + 1) * cell - margin + 0.5)
        band = lum[y0:max(y1, y0 + 1)].mean(axis=0)
        for c in range(COLS):
            x0, x1 = int(c * cell + margin + 0.5), int((c + 1) * cell - margin + 0.5)
            out[r * COLS + c] = band[x0:max(x1, x0 + 1)].mean()
    return out


def read(image: np.ndarray) -> tuple[int, int] | None:
    """(frame_index, t_ms) from a picture, or None when no valid code is there.

    ``image``: (h, w) luma (a yuv420p array of shape (h*3/2, w) works too: the code is in
    the luma rows) or (h, w, 3) RGB, any width as long as the aspect ratio was kept.
    """
    cells = read_cells(image)
    if cells is None:
        return None
    sync = np.array(SYNC, bool)
    white, black = cells[:8][sync].mean(), cells[:8][~sync].mean()
    if white - black < MIN_CONTRAST:
        return None
    bits = (cells > (white + black) / 2).astype(np.uint8)
    if tuple(bits[:8]) != SYNC or tuple(bits[-len(STOP):]) != STOP:
        return None
    value = 0
    for b in bits[8:8 + INDEX_BITS + TIME_BITS]:
        value = (value << 1) | int(b)
    crc = 0
    for b in bits[8 + INDEX_BITS + TIME_BITS:8 + INDEX_BITS + TIME_BITS + CRC_BITS]:
        crc = (crc << 1) | int(b)
    payload = value.to_bytes(9, "big")
    if zlib.crc32(payload) != crc:
        return None
    return value >> TIME_BITS, value & ((1 << TIME_BITS) - 1)


# The same reader for a browser page. A function for ``page.evaluate``: it draws the top band
# of the playing <video> (at the video's own resolution, whatever level is playing) onto a
# canvas, decodes it like ``read`` and returns {index, t, now, width, height} or {error, now,
# ...}. ``now`` is Date.now() taken right after the frame was grabbed. No eval, no Function():
# the viewer page's CSP allows neither.
READ_JS = r"""
(arg) => {
  const COLS = 64, ROWS = 2, SAMPLE = 0.4, MIN_CONTRAST = 48;
  const SYNC = [1,0,1,1,0,0,1,0];
  const STOP = [0,1,0,0,1,1,0,1,1,1,1,0,0,1,0,0];
  const video = (arg && arg.selector) ? document.querySelector(arg.selector)
                                      : (window.aethexPlayer && window.aethexPlayer.video);
  if (!video) return {error: "no video", now: Date.now()};
  const w = video.videoWidth, h = video.videoHeight;
  if (!w || !h) return {error: "no picture", now: Date.now()};
  const bandH = Math.ceil(w * ROWS / COLS);
  let canvas = window.__aethexClockCanvas;
  if (!canvas) { canvas = window.__aethexClockCanvas = document.createElement("canvas"); }
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== bandH) canvas.height = bandH;
  const ctx = canvas.getContext("2d", {willReadFrequently: true});
  ctx.drawImage(video, 0, 0, w, bandH, 0, 0, w, bandH);
  const now = Date.now();
  const px = ctx.getImageData(0, 0, w, bandH).data;
  const cell = w / COLS, margin = cell * (1 - SAMPLE) / 2;
  const cells = new Float64Array(COLS * ROWS);
  for (let r = 0; r < ROWS; r++) {
    const y0 = Math.floor(r * cell + margin + 0.5);
    const y1 = Math.max(Math.floor((r + 1) * cell - margin + 0.5), y0 + 1);
    for (let c = 0; c < COLS; c++) {
      const x0 = Math.floor(c * cell + margin + 0.5);
      const x1 = Math.max(Math.floor((c + 1) * cell - margin + 0.5), x0 + 1);
      let sum = 0, n = 0;
      for (let y = y0; y < y1 && y < bandH; y++) {
        for (let x = x0; x < x1; x++) {
          const i = (y * w + x) * 4;
          sum += px[i] * 0.299 + px[i + 1] * 0.587 + px[i + 2] * 0.114;
          n++;
        }
      }
      cells[r * COLS + c] = n ? sum / n : 0;
    }
  }
  let white = 0, black = 0, nw = 0, nb = 0;
  for (let i = 0; i < 8; i++) {
    if (SYNC[i]) { white += cells[i]; nw++; } else { black += cells[i]; nb++; }
  }
  white /= nw; black /= nb;
  const base = {now: now, width: w, height: h, currentTime: video.currentTime};
  if (white - black < MIN_CONTRAST) return Object.assign(base, {error: "no code"});
  const thr = (white + black) / 2;
  const bits = Array.from(cells, v => v > thr ? 1 : 0);
  for (let i = 0; i < 8; i++) if (bits[i] !== SYNC[i]) return Object.assign(base, {error: "sync"});
  for (let i = 0; i < 16; i++)
    if (bits[COLS * ROWS - 16 + i] !== STOP[i]) return Object.assign(base, {error: "stop"});
  const bytes = new Uint8Array(9);
  for (let i = 0; i < 72; i++) if (bits[8 + i]) bytes[i >> 3] |= 0x80 >> (i & 7);
  let crc = 0xFFFFFFFF;
  for (let i = 0; i < 9; i++) {
    crc ^= bytes[i];
    for (let k = 0; k < 8; k++) crc = (crc & 1) ? ((crc >>> 1) ^ 0xEDB88320) : (crc >>> 1);
  }
  crc = (crc ^ 0xFFFFFFFF) >>> 0;
  let got = 0;
  for (let i = 0; i < 32; i++) got = got * 2 + bits[80 + i];
  if (got !== crc) return Object.assign(base, {error: "crc"});
  const index = (bytes[0] << 16) | (bytes[1] << 8) | bytes[2];
  let t = 0;
  for (let i = 3; i < 9; i++) t = t * 256 + bytes[i];
  return Object.assign(base, {index: index, t: t});
}
"""


# -- the publisher -------------------------------------------------------------------------

@dataclass
class PublisherOptions:
    width: int = 1280
    height: int = 720
    fps: int = 30
    gop_seconds: float = 1.0
    bitrate_kbps: int = 3000
    seconds: float = 60.0
    audio: bool = True


class _Picture:
    """A moving gradient, a moving box and some fixed texture in yuv420p, cheap per frame
    (numpy only, no scaler) and with enough detail that x264 has real work."""

    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height
        rng = np.random.default_rng(7)
        base = np.add.outer(np.arange(height) // 2, np.arange(width) // 3).astype(np.uint8)
        texture = rng.integers(0, 24, size=(height, width), dtype=np.uint8)
        self.base = (base // 2 + texture).astype(np.uint8)
        self.uv = np.full((height // 2, width), 128, np.uint8)

    def frame(self, i: int) -> np.ndarray:
        yuv = np.empty((self.h * 3 // 2, self.w), np.uint8)
        y = yuv[: self.h]
        np.add(self.base, np.uint8((i * 3) % 256), out=y, casting="unsafe")
        bx = (i * 7) % (self.w - 160)
        by = self.h // 3 + int(80 * np.sin(i / 15))
        y[by:by + 120, bx:bx + 160] = 200
        uv = yuv[self.h:]
        uv[:] = self.uv
        uv[:, : (i * 5) % self.w] = 100
        return yuv


def publish(url: str, opts: PublisherOptions, log_path: Path | None = None) -> int:
    """Publish frames in real time until ``opts.seconds`` or SIGTERM; returns frames sent.

    Each frame carries (index, wall-clock ms taken just before encoding). The log (JSON lines,
    flushed every second) has, per frame, that time and the time the muxer returned.
    """
    import av

    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    pic = _Picture(opts.width, opts.height)
    fps = opts.fps
    frames = int(opts.seconds * fps)
    log = open(log_path, "w") if log_path is not None else None  # noqa: SIM115
    sent = 0
    with av.open(url, "w", format="flv") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = opts.width, opts.height, "yuv420p"
        vs.bit_rate = opts.bitrate_kbps * 1000
        gop = max(1, round(opts.gop_seconds * fps))
        vs.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(gop),
                      "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:"
                                     f"vbv-maxrate={opts.bitrate_kbps}:"
                                     f"vbv-bufsize={opts.bitrate_kbps}"}
        aus = None
        if opts.audio:
            aus = out.add_stream("aac", rate=48000)
            aus.layout = "stereo"
            aus.bit_rate = 64000
        silence = np.zeros((2, 1024), dtype=np.float32)
        t_audio = 0
        start = time.monotonic()
        i = 0
        while i < frames and not stop:
            delay = start + i / fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yuv = pic.frame(i)
            t_ms = int(time.time() * 1000)
            stamp_luma(yuv[: opts.height], i, t_ms)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = i
            frame.time_base = fractions.Fraction(1, fps)
            for pkt in vs.encode(frame):
                out.mux(pkt)
            if aus is not None:
                while t_audio < (i + 1) * 48000 // fps:
                    af = av.AudioFrame.from_ndarray(silence, format="fltp", layout="stereo")
                    af.sample_rate, af.pts = 48000, t_audio
                    t_audio += 1024
                    for pkt in aus.encode(af):
                        out.mux(pkt)
            if log is not None:
                log.write(f'{{"i": {i}, "t": {t_ms}, "sent": {time.time() * 1000:.2f}}}\n')
                if i % fps == 0:
                    log.flush()
            sent += 1
            i += 1
        for stream in (vs, aus):
            if stream is not None:
                for pkt in stream.encode(None):
                    out.mux(pkt)
    if log is not None:
        log.close()
    return sent


def start_publisher(url: str, seconds: float, log_path: Path | None = None,
                    gop_seconds: float = 1.0, width: int = 1280, height: int = 720,
                    fps: int = 30) -> subprocess.Popen:
    """The publisher in its own process (see the module docstring for why)."""
    args = [sys.executable, str(Path(__file__).resolve()), "publish", url,
            "--seconds", str(seconds), "--gop", str(gop_seconds), "--size",
            f"{width}x{height}", "--fps", str(fps)]
    if log_path is not None:
        args += ["--log", str(log_path)]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> str:
    """SIGTERM, wait, SIGKILL if needed; returns the tail of its stderr (if piped)."""
    if proc is None:
        return ""
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if not err:
        return ""
    return err.decode(errors="replace").strip()[-2000:]


def read_publisher_log(path: Path) -> dict[int, tuple[int, float]]:
    """index -> (stamped ms, ms when the muxer returned)."""
    out: dict[int, tuple[int, float]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line being written
        out[rec["i"]] = (rec["t"], rec["sent"])
    return out


# -- fMP4 parts -> decoded frames ----------------------------------------------------------

def _boxes(data: bytes | memoryview, start: int = 0, end: int | None = None
           ) -> Iterator[tuple[bytes, int, int, int]]:
    """(type, offset, size, header size) of each box in data[start:end]."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = bytes(data[pos + 4:pos + 8])
        header = 8
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"bad box {kind!r} at {pos}")
        yield kind, pos, size, header
        pos += size


def _child(data: bytes, offset: int, size: int, header: int, kind: bytes,
           skip: int = 0) -> tuple[int, int, int] | None:
    for k, off, sz, hdr in _boxes(data, offset + header + skip, offset + size):
        if k == kind:
            return off, sz, hdr
    return None


def avc_config(init: bytes) -> tuple[int, bytes, int]:
    """(video track id, avcC record, timescale) from an initialization segment."""
    moov = _child(init, -8, len(init) + 8, 8, b"moov")
    if moov is None:
        raise ValueError("no moov")
    for kind, off, size, hdr in _boxes(init, moov[0] + moov[2], moov[0] + moov[1]):
        if kind != b"trak":
            continue
        tkhd = _child(init, off, size, hdr, b"tkhd")
        mdia = _child(init, off, size, hdr, b"mdia")
        if tkhd is None or mdia is None:
            continue
        version = init[tkhd[0] + 8]
        track_id = int.from_bytes(init[tkhd[0] + (28 if version == 1 else 20):][:4], "big")
        mdhd = _child(init, *mdia, b"mdhd")
        timescale = 90000
        if mdhd is not None:
            v = init[mdhd[0] + 8]
            p = mdhd[0] + (28 if v == 1 else 20)
            timescale = int.from_bytes(init[p:p + 4], "big")
        minf = _child(init, *mdia, b"minf")
        stbl = minf and _child(init, *minf, b"stbl")
        stsd = stbl and _child(init, *stbl, b"stsd")
        if not stsd:
            continue
        entry = _child(init, *stsd, b"avc1", skip=8) or _child(init, *stsd, b"avc3", skip=8)
        if entry is None:
            continue
        # VisualSampleEntry: 8 header + 78 bytes of fixed fields, then child boxes.
        avcc = _child(init, entry[0], entry[1], entry[2], b"avcC", skip=78)
        if avcc is None:
            continue
        return track_id, bytes(init[avcc[0] + avcc[2]:avcc[0] + avcc[1]]), timescale
    raise ValueError("no H.264 video track in the initialization segment")


def video_samples(data: bytes, track_id: int) -> list[tuple[int, bytes, bool]]:
    """(pts, sample bytes, is sync sample) of one track in a run of moof+mdat pairs."""
    out: list[tuple[int, bytes, bool]] = []
    for kind, moof, msize, mhdr in _boxes(data):
        if kind != b"moof":
            continue
        for k, traf, tsize, thdr in _boxes(data, moof + mhdr, moof + msize):
            if k != b"traf":
                continue
            tfhd = _child(data, traf, tsize, thdr, b"tfhd")
            if tfhd is None:
                continue
            p = tfhd[0] + 8
            tf_flags = int.from_bytes(data[p + 1:p + 4], "big")
            if int.from_bytes(data[p + 4:p + 8], "big") != track_id:
                continue
            q = p + 8
            base = moof
            if tf_flags & 0x1:
                base = int.from_bytes(data[q:q + 8], "big")
                q += 8
            if tf_flags & 0x2:
                q += 4
            default_duration = default_size = default_flags = 0
            if tf_flags & 0x8:
                default_duration = int.from_bytes(data[q:q + 4], "big")
                q += 4
            if tf_flags & 0x10:
                default_size = int.from_bytes(data[q:q + 4], "big")
                q += 4
            if tf_flags & 0x20:
                default_flags = int.from_bytes(data[q:q + 4], "big")
                q += 4
            decode_time = 0
            tfdt = _child(data, traf, tsize, thdr, b"tfdt")
            if tfdt is not None:
                v = data[tfdt[0] + 8]
                n = 8 if v == 1 else 4
                decode_time = int.from_bytes(data[tfdt[0] + 12:tfdt[0] + 12 + n], "big")
            for k2, trun, _rsize, _rhdr in _boxes(data, traf + thdr, traf + tsize):
                if k2 != b"trun":
                    continue
                version = data[trun + 8]
                flags = int.from_bytes(data[trun + 9:trun + 12], "big")
                count = int.from_bytes(data[trun + 12:trun + 16], "big")
                r = trun + 16
                cursor = base
                if flags & 0x1:
                    cursor = base + int.from_bytes(data[r:r + 4], "big", signed=True)
                    r += 4
                first_flags = None
                if flags & 0x4:
                    first_flags = int.from_bytes(data[r:r + 4], "big")
                    r += 4
                for n in range(count):
                    duration, size, sflags, cts = default_duration, default_size, default_flags, 0
                    if flags & 0x100:
                        duration = int.from_bytes(data[r:r + 4], "big")
                        r += 4
                    if flags & 0x200:
                        size = int.from_bytes(data[r:r + 4], "big")
                        r += 4
                    if flags & 0x400:
                        sflags = int.from_bytes(data[r:r + 4], "big")
                        r += 4
                    elif n == 0 and first_flags is not None:
                        sflags = first_flags
                    if flags & 0x800:
                        cts = int.from_bytes(data[r:r + 4], "big", signed=(version == 1))
                        r += 4
                    sync = not (sflags & 0x10000)
                    out.append((decode_time + cts, bytes(data[cursor:cursor + size]), sync))
                    cursor += size
                    decode_time += duration
    return out


class PartDecoder:
    """Decodes one rendition's parts in order, incrementally (one decoder for the whole run),
    and reads the clock off every frame. Frames before the first sync sample are skipped."""

    def __init__(self, init: bytes) -> None:
        import av

        self.track_id, avcc, self.timescale = avc_config(init)
        self.ctx = av.CodecContext.create("h264", "r")
        self.ctx.extradata = avcc
        # One thread: a frame comes out for its own packet, not some packets later.
        self.ctx.thread_count = 1
        self.started = False
        self.frames = 0
        self.unreadable = 0

    def decode(self, part: bytes) -> list[tuple[int, int, int]]:
        """(pts, frame index, t_ms) of each readable frame of the part."""
        import av

        out = []
        for pts, sample, sync in video_samples(part, self.track_id):
            if not self.started:
                if not sync:
                    continue
                self.started = True
            packet = av.Packet(sample)
            packet.pts = packet.dts = pts
            try:
                frames = self.ctx.decode(packet)
            except av.error.FFmpegError:
                continue
            for frame in frames:
                self.frames += 1
                plane = frame.planes[0]
                rows = band_height(frame.width)
                y = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
                code = read(y[:rows, : frame.width])
                if code is None:
                    self.unreadable += 1
                    continue
                out.append((frame.pts if frame.pts is not None else pts, code[0], code[1]))
        return out


# -- media playlists ---------------------------------------------------------------------------

_ATTR_URI_RE = re.compile(r'URI="([^"]*)"')


@dataclass
class MediaPlaylist:
    """What a player needs from an LL-HLS media playlist (full or delta)."""

    map_uri: str | None = None
    # (msn, part index, uri, independent, duration), in playlist order
    parts: list[tuple[int, int, str, bool, float]] = field(default_factory=list)
    # complete segments: (msn, uri, duration)
    segments: list[tuple[int, str, float]] = field(default_factory=list)
    hint: tuple[int, int, str] | None = None  # preload hint (msn, part index, uri)
    ended: bool = False
    part_target: float = 0.0
    target_duration: float = 0.0
    can_skip: bool = False


def parse_media_playlist(text: str) -> MediaPlaylist:
    """Segment and part numbers counted from EXT-X-MEDIA-SEQUENCE (and EXT-X-SKIP), as a
    player does; nothing here depends on how our server names its files."""
    pl = MediaPlaylist()
    msn = 0
    part = 0
    duration = 0.0
    expect_uri = False
    for line in text.splitlines():
        if not line:
            continue
        if expect_uri and not line.startswith("#"):
            pl.segments.append((msn, line.strip(), duration))
            msn += 1
            part = 0
            expect_uri = False
            continue
        if line.startswith("#EXT-X-PART:"):
            m = _ATTR_URI_RE.search(line)
            d = float(line.split("DURATION=", 1)[1].split(",", 1)[0])
            pl.parts.append((msn, part, m.group(1) if m else "", "INDEPENDENT=YES" in line, d))
            part += 1
        elif line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",", 1)[0])
            expect_uri = True
        elif line.startswith("#EXT-X-PRELOAD-HINT:") and "TYPE=PART" in line:
            m = _ATTR_URI_RE.search(line)
            if m:
                pl.hint = (msn, part, m.group(1))
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-SKIP:"):
            msn += int(line.split("SKIPPED-SEGMENTS=", 1)[1].split(",", 1)[0])
        elif line.startswith("#EXT-X-MAP:"):
            m = _ATTR_URI_RE.search(line)
            if m:
                pl.map_uri = m.group(1)
        elif line.startswith("#EXT-X-PART-INF:"):
            pl.part_target = float(line.split("PART-TARGET=", 1)[1].split(",", 1)[0])
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            pl.target_duration = float(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-SERVER-CONTROL:"):
            pl.can_skip = "CAN-SKIP-UNTIL=" in line
        elif line.startswith("#EXT-X-ENDLIST"):
            pl.ended = True
    return pl


def master_variants(text: str) -> list[tuple[int, int, str]]:
    """(height, bandwidth, uri) of each variant of a master playlist."""
    out = []
    pending: tuple[int, int] | None = None
    for line in text.splitlines():
        if line.startswith("#EXT-X-STREAM-INF:"):
            res = re.search(r"RESOLUTION=(\d+)x(\d+)", line)
            bw = re.search(r"BANDWIDTH=(\d+)", line)
            pending = (int(res.group(2)) if res else 0, int(bw.group(1)) if bw else 0)
        elif line and not line.startswith("#") and pending is not None:
            out.append((pending[0], pending[1], line.strip()))
            pending = None
    return out


def with_query(url: str, **params: object) -> str:
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    return url + ("&" if "?" in url else "?") + extra


# -- the server ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


@dataclass
class LiveServer:
    """``python -m mediaserver serve`` in a subprocess with the latency settings, one user and
    ``channels`` channels ``bench-0``… made through storage.queries (like rtmp_ingest.py)."""

    workdir: Path
    passthrough: str = "auto"
    preset: str = "veryfast"
    segment: float = 2.0
    part: float = 0.333
    channels: int = 1
    transcode: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.dir = self.workdir / "aethex"
        self.rtmp_port = free_port()
        self.http_port = free_port()

    def env(self) -> dict[str, str]:
        return {**os.environ, "AETHEX_DATA_DIR": str(self.dir),
                "AETHEX_RTMP_HOST": "127.0.0.1", "AETHEX_RTMP_PORT": str(self.rtmp_port),
                "AETHEX_HTTP_HOST": "127.0.0.1", "AETHEX_HTTP_PORT": str(self.http_port),
                "AETHEX_LOG__LEVEL": "warning",
                "AETHEX_TRANSCODE__ENABLED": "true" if self.transcode else "false",
                "AETHEX_TRANSCODE__PRESET": self.preset,
                "AETHEX_TRANSCODE__PASSTHROUGH": self.passthrough,
                "AETHEX_HLS__SEGMENT_DURATION": str(self.segment),
                "AETHEX_HLS__PART_DURATION": str(self.part),
                "AETHEX_RTMP__IDLE_TIMEOUT": "30",
                # Every client of a benchmark is on 127.0.0.1, as behind a reverse proxy: the
                # cap against one address flooding the server is off (0), as there.
                "AETHEX_HTTP__MAX_CONNECTIONS_PER_ADDRESS": "0",
                **self.extra_env}

    def prepare(self) -> None:
        from mediaserver.settings import load_settings
        from storage import Database, queries, upgrade

        settings = load_settings(None, env=self.env())
        upgrade(settings.effective_database_url)

        async def create() -> list[str]:
            db = Database(settings.effective_database_url)
            await db.connect()
            keys = []
            async with db.session() as s:
                await queries.create_user(s, "bench", "bench@example.test", None)
                for i in range(self.channels):
                    ch = await queries.create_channel(s, "bench", f"bench-{i}")
                    keys.append(ch.stream_key)
                await s.commit()
            await db.dispose()
            return keys

        self.keys = asyncio.run(create())

    def start(self) -> int:
        self.proc = subprocess.Popen([sys.executable, "-m", "mediaserver", "serve"],
                                     env=self.env(), cwd=ROOT)
        wait_port(self.rtmp_port)
        wait_port(self.http_port)
        return self.proc.pid

    def rtmp_url(self, i: int = 0) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{self.keys[i]}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- /proc and statistics --------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return pids


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its descendants (nginx: master + workers)."""
    return sum(c for c in (cpu_seconds(p) for p in process_tree(pid)) if not math.isnan(c))


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_pressure_total() -> float:
    """Seconds some runnable task waited for a CPU (PSI, /proc/pressure/cpu), NaN without PSI.
    The difference over a window says how contended the machine was: other work on a 2-core
    machine inflates every latency measured here."""
    try:
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some"):
                return int(line.rsplit("total=", 1)[1]) / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


def machine_cpu_seconds() -> float:
    """CPU seconds used by everything on the machine (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
        return (user + nice + system + irq + softirq + steal) / CLK_TCK
    except (OSError, ValueError):
        return float("nan")


class Contention:
    """How busy the machine was over a window, and how much of that was not ours."""

    def __init__(self, *pids: int) -> None:
        self.pids = list(pids)
        self.start()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.m0 = machine_cpu_seconds()
        self.p0 = cpu_pressure_total()
        self.o0 = sum(tree_cpu_seconds(p) for p in self.pids) + self._reaped()

    @staticmethod
    def _reaped() -> float:
        """CPU of our children that already exited and were waited for (a load generator)."""
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    def stop(self) -> str:
        wall = time.monotonic() - self.t0
        machine = (machine_cpu_seconds() - self.m0) / wall
        ours = (sum(tree_cpu_seconds(p) for p in self.pids) + self._reaped() - self.o0) / wall
        pressure = (cpu_pressure_total() - self.p0) / wall
        return (f"machine CPU {machine * 100:.0f}% (of {os.cpu_count() * 100}%), ours "
                f"{ours * 100:.0f}%, other processes {max(0.0, machine - ours) * 100:.0f}%; "
                f"some task waiting for a CPU {pressure * 100:.0f}% of the time")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


# -- profiling -------------------------------------------------------------------------------

PY_SPY = ROOT / ".venv" / "bin" / "py-spy"


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    """py-spy (GIL-holding samples only, not pausing the target) for ``seconds``."""
    if not PY_SPY.exists():
        return None
    return subprocess.Popen([str(PY_SPY), "record", "--gil", "--nonblocking", "-p", str(pid),
                             "-d", str(max(1, int(seconds))), "-r", "100", "-f", "raw",
                             "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_summary(path: Path, top: int = 12) -> list[str]:
    """The functions with the most samples (self and inclusive) from a raw py-spy file."""
    from collections import Counter

    if not path.exists():
        return ["(no profile)"]
    total = 0
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        total += int(n)
        frames = stack.split(";")
        own[frames[-1]] += int(n)
        for f in set(frames):
            incl[f] += int(n)
    if not total:
        return ["(no samples)"]
    out = [f"{total} samples holding the GIL"]
    out += [f"self {n / total * 100:5.1f}%  {f}" for f, n in own.most_common(top)]
    skip = ("<module>", "run (", "_run", "main (", "cmd_serve", "Runner.run")
    inclusive = [(f, n) for f, n in incl.most_common(top * 3) if not f.startswith(skip)]
    out += [f"incl {n / total * 100:5.1f}%  {f}" for f, n in inclusive[:top]]
    return out


# -- command line ------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description="barcode clock helpers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("publish", help="publish barcoded 720p30 H.264 + silent AAC over RTMP")
    p.add_argument("url")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--gop", type=float, default=1.0, help="keyframe interval in seconds")
    p.add_argument("--size", default="1280x720")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--bitrate", type=int, default=3000, help="kbit/s")
    p.add_argument("--no-audio", action="store_true")
    p.add_argument("--log", type=Path)
    args = ap.parse_args()
    if args.cmd == "publish":
        w, h = (int(x) for x in args.size.split("x"))
        publish(args.url, PublisherOptions(width=w, height=h, fps=args.fps,
                                           gop_seconds=args.gop, bitrate_kbps=args.bitrate,
                                           seconds=args.seconds, audio=not args.no_audio),
                args.log)


if __name__ == "__main__":
    main()
