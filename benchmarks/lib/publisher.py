"""A real-time PyAV RTMP publisher: generated H.264 (or HEVC over Enhanced RTMP) and AAC, each
frame carrying the barcode clock (``barcode``), optionally logging when each frame was sent.

Why PyAV beside the ffmpeg CLI: it is a second real client (its own FLV muxer and RTMP
protocol code), it publishes HEVC the way OBS does, and only it can stamp the send time into
each frame just before encoding it.

Run it in its own process (``start_publisher``, or ``python -m benchmarks.lib.publisher URL``):
PyAV keeps the GIL while libavformat blocks on the RTMP socket, so a publisher thread would
stall whatever else ran in the same process, the server first of all.
"""

from __future__ import annotations

import argparse
import fractions
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import av
import numpy as np

from benchmarks.lib import ROOT
from benchmarks.lib.barcode import stamp_luma


@dataclass
class PublisherOptions:
    width: int = 1280
    height: int = 720
    fps: int = 30
    gop_seconds: float = 1.0
    # None: the encoder's own rate control (CRF), no VBV.
    bitrate_kbps: int | None = 3000
    seconds: float = 60.0
    audio: bool = True
    codec: str = "libx264"  # or libx265 (hvc1 over Enhanced RTMP)
    # "texture": enough detail that x264 has real work (the benchmarks); "flat": nearly free
    # to encode, for tests that only need a valid stream on a busy machine.
    picture: str = "texture"


class Picture:
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
        bx = (i * 7) % max(1, self.w - 160)
        by = self.h // 3 + int(80 * np.sin(i / 15))
        y[by : by + 120, bx : bx + 160] = 200
        uv = yuv[self.h :]
        uv[:] = self.uv
        uv[:, : (i * 5) % self.w] = 100
        return yuv


class FlatPicture:
    """One grey level a frame and a growing dark band: a valid, moving picture that costs the
    encoder almost nothing (HEVC at x265's default preset included)."""

    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height

    def frame(self, i: int) -> np.ndarray:
        yuv = np.full((self.h * 3 // 2, self.w), 128, np.uint8)
        y = yuv[: self.h]
        y[:] = (i * 7) % 255
        y[:, : (i * 4) % self.w] = 40
        return yuv


def _video_options(opts: PublisherOptions) -> dict[str, object]:
    gop = max(1, round(opts.gop_seconds * opts.fps))
    vbv = (
        f":vbv-maxrate={opts.bitrate_kbps}:vbv-bufsize={opts.bitrate_kbps}"
        if opts.bitrate_kbps
        else ""
    )
    if opts.codec == "libx265":
        # ultrafast/zerolatency as for x264: no lookahead and one frame thread, so the first
        # packet leaves after the first frame. Otherwise x265 holds ~20 frames before its first
        # output, which on a loaded or slow machine outlasted a server's idle timeout.
        return {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x265-params": f"log-level=error:keyint={gop}:bframes=0{vbv}",
        }
    return {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "g": str(gop),
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0{vbv}",
    }


def publish(
    url: str,
    opts: PublisherOptions,
    log_path: Path | None = None,
    stop: threading.Event | None = None,
    realtime: bool = True,
) -> int:
    """Publish frames in real time until ``opts.seconds`` or ``stop``; returns frames sent.

    Each frame carries (index, wall-clock ms taken just before encoding). The log (JSON lines,
    flushed every second) has, per frame, that time and the time the muxer returned.
    ``realtime=False`` encodes as fast as the encoder goes (``url`` is then a file: ``replay``).
    """
    pic = (FlatPicture if opts.picture == "flat" else Picture)(opts.width, opts.height)
    fps = opts.fps
    frames = int(opts.seconds * fps)
    log = open(log_path, "w") if log_path is not None else None
    sent = 0
    with av.open(url, "w", format="flv") as out:
        vs = cast(av.VideoStream, out.add_stream(opts.codec, rate=fps))
        vs.width, vs.height, vs.pix_fmt = opts.width, opts.height, "yuv420p"
        if opts.bitrate_kbps:
            vs.bit_rate = opts.bitrate_kbps * 1000
        vs.options = _video_options(opts)
        aus = None
        if opts.audio:
            aus = out.add_stream("aac", rate=48000)
            aus.layout = "stereo"
            aus.bit_rate = 64000
        silence = np.zeros((2, 1024), dtype=np.float32)
        t_audio = 0
        start = time.monotonic()
        i = 0
        while i < frames and not (stop is not None and stop.is_set()):
            delay = start + i / fps - time.monotonic()
            if realtime and delay > 0:
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


def replay(url: str, path: Path, period: float, seconds: float, stop: threading.Event) -> int:
    """Send the first ``period`` seconds of the FLV file at ``path`` over and over in real time,
    each pass stamped after the one before, until ``seconds`` or ``stop``; returns packets sent.

    Why: encoding 720p30 takes this process about a fifth of a core, and on a 2-core machine
    that is taken from the server, the edge and the viewers a benchmark measures (a streamer's
    encoder runs on the streamer's machine). Copying packets costs next to nothing. The server
    still transcodes the same picture; only the clock stamped in it repeats every ``period``.
    """
    sent = 0
    with av.open(str(path)) as src:
        streams = list(src.streams)
        bases = [s.time_base or fractions.Fraction(1, 1000) for s in streams]
        ends = [round(period / tb) for tb in bases]
        items = [
            (p.stream.index, bytes(p), p.pts, p.dts, p.is_keyframe)
            for p in src.demux()
            if p.size and p.pts is not None and p.dts is not None and p.pts < ends[p.stream.index]
        ]
        with av.open(url, "w", format="flv") as out:
            outs = [out.add_stream_from_template(s) for s in streams]
            start = time.monotonic()
            lap = 0
            while lap * period < seconds and not stop.is_set():
                for index, data, pts, dts, key in items:
                    at = float((dts + lap * ends[index]) * bases[index])
                    if at >= seconds or stop.is_set():
                        break
                    delay = start + at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    pkt = av.Packet(data)
                    pkt.stream = outs[index]
                    pkt.time_base = bases[index]
                    pkt.pts, pkt.dts = pts + lap * ends[index], dts + lap * ends[index]
                    pkt.is_keyframe = key
                    out.mux(pkt)
                    sent += 1
                lap += 1
    return sent


def start_publisher(
    url: str,
    seconds: float,
    log_path: Path | None = None,
    gop_seconds: float = 1.0,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    loop: float | None = None,
) -> subprocess.Popen[bytes]:
    """The publisher in its own process (see the module docstring for why); stderr is piped
    for ``server.stop_process`` to return. ``loop``: encode that many seconds once, then send
    them over and over (``replay``): for benchmarks that need the stream but not its clock."""
    args = [
        sys.executable,
        "-m",
        "benchmarks.lib.publisher",
        url,
        "--seconds",
        str(seconds),
        "--gop",
        str(gop_seconds),
        "--size",
        f"{width}x{height}",
        "--fps",
        str(fps),
    ]
    if log_path is not None:
        args += ["--log", str(log_path)]
    if loop is not None:
        args += ["--loop", str(loop)]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


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


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog=prog, description="publish barcoded 720p30 H.264 (or HEVC) + silent AAC over RTMP"
    )
    ap.add_argument("url")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--gop", type=float, default=1.0, help="keyframe interval in seconds")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--bitrate", type=int, default=3000, help="kbit/s (0: the encoder's CRF)")
    ap.add_argument("--codec", default="libx264", help="libx264 (avc1) or libx265 (hvc1)")
    ap.add_argument("--picture", choices=("texture", "flat"), default="texture")
    ap.add_argument("--no-audio", action="store_true")
    ap.add_argument("--log", type=Path)
    ap.add_argument(
        "--loop",
        type=float,
        help="encode this many seconds once (whole GOPs; with AAC at 48 kHz, a multiple of 8 s "
        "keeps every audio frame whole), then send them again and again (no --log)",
    )
    args = ap.parse_args(argv)
    if args.loop is not None and args.log is not None:
        ap.error("--loop repeats the stamped clock, so there is no send time to --log")
    w, h = (int(x) for x in args.size.split("x"))
    stop = threading.Event()
    # SIGTERM (stop_process) ends the stream cleanly: the muxer is flushed and closed.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    opts = PublisherOptions(
        width=w,
        height=h,
        fps=args.fps,
        gop_seconds=args.gop,
        bitrate_kbps=args.bitrate or None,
        seconds=args.seconds if args.loop is None else args.loop,
        audio=not args.no_audio,
        codec=args.codec,
        picture=args.picture,
    )
    if args.loop is None:
        publish(args.url, opts, args.log, stop)
        return
    with tempfile.TemporaryDirectory(prefix="aethex-publisher-") as tmp:
        material = Path(tmp) / "loop.flv"
        publish(str(material), opts, realtime=False)
        replay(args.url, material, args.loop, args.seconds, stop)


if __name__ == "__main__":
    main()
