"""PyAV as a second real RTMP client: publishes generated video (H.264 or HEVC over Enhanced
RTMP) and AAC audio, in real time.

Run it in its own process (``python -m tests.pyav_publisher URL``): PyAV keeps the GIL while
libavformat blocks on the socket, so a publisher thread in the server's own process would stall
the server it is talking to.
"""

from __future__ import annotations

import argparse
import fractions
import time

import av
import numpy as np


def publish(url: str, *, codec: str = "libx265", seconds: float = 2.0, width: int = 640,
            height: int = 360, fps: int = 30, audio: bool = True) -> int:
    """Publish ``seconds`` of frames; returns the number of video frames sent."""
    frames = int(seconds * fps)
    with av.open(url, "w", format="flv") as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        if codec == "libx265":
            vs.options = {"x265-params": f"log-level=error:keyint={fps}:bframes=0"}
        else:
            vs.options = {"g": str(fps), "preset": "ultrafast", "tune": "zerolatency"}
        aus = None
        if audio:
            aus = out.add_stream("aac", rate=48000)
            aus.layout = "stereo"
        t_audio = 0
        start = time.monotonic()
        for i in range(frames):
            img = np.full((height, width, 3), (i * 7) % 255, dtype=np.uint8)
            img[:, : (i * 4) % width] = 40
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = fractions.Fraction(1, fps)
            for pkt in vs.encode(frame):
                out.mux(pkt)
            if aus is not None:
                while t_audio < (i + 1) * 48000 // fps:
                    samples = np.zeros((2, 1024), dtype=np.float32)
                    af = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
                    af.sample_rate, af.pts = 48000, t_audio
                    t_audio += 1024
                    for pkt in aus.encode(af):
                        out.mux(pkt)
            delay = start + (i + 1) / fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        for stream in (vs, aus):
            if stream is not None:
                for pkt in stream.encode(None):
                    out.mux(pkt)
    return frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("url")
    ap.add_argument("--codec", default="libx265", help="libx265 (hvc1) or libx264 (avc1)")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--no-audio", action="store_true")
    args = ap.parse_args()
    publish(args.url, codec=args.codec, seconds=args.seconds, audio=not args.no_audio)


if __name__ == "__main__":
    main()
