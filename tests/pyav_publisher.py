"""PyAV as a second real RTMP client: publishes generated video (H.264 or HEVC over Enhanced
RTMP) and AAC audio, in real time, with the benchmarks' publisher (``benchmarks.lib.publisher``)
set for tests: a flat picture that costs the encoder almost nothing, the encoder's own rate
control, 640x360 for 2 s.

Run it in its own process (``python -m tests.pyav_publisher URL``): PyAV keeps the GIL while
libavformat blocks on the socket, so a publisher thread in the server's own process would stall
the server it is talking to.
"""

from __future__ import annotations

import argparse

from benchmarks.lib import publisher


def publish(
    url: str,
    *,
    codec: str = "libx265",
    seconds: float = 2.0,
    width: int = 640,
    height: int = 360,
    fps: int = 30,
    audio: bool = True,
) -> int:
    """Publish ``seconds`` of frames; returns the number of video frames sent."""
    return publisher.publish(
        url,
        publisher.PublisherOptions(
            width=width,
            height=height,
            fps=fps,
            bitrate_kbps=None,
            seconds=seconds,
            audio=audio,
            codec=codec,
            picture="flat",
        ),
    )


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
