"""PyAV's FFmpeg as an independent RTMP *server* for tests: ``python -m tests.rtmp_listener URL``.

FFmpeg's ``rtmp`` protocol in listen mode takes one publisher, and the FFmpeg inside the PyAV
wheel (8.x) demuxes Enhanced RTMP (HEVC, AV1, Opus), which Debian's ffmpeg 5.1 CLI does not:
so what our RTMP client sends is checked by a parser and decoders we did not write. Prints one
JSON object: per track the codec, its configuration (hex), packets received and frames decoded
(the decoders flushed at the end). Runs in its own process because libavformat blocks in
accept() holding the GIL.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import av


def listen(url: str, timeout: int) -> dict[str, Any]:
    src = av.open(url, "r", format="flv", options={"listen": "1", "timeout": str(timeout)})
    info: dict[str, Any] = {}
    for stream in src.streams:
        info[stream.type] = {
            "codec": stream.codec_context.codec.name,
            "config": bytes(stream.codec_context.extradata or b"").hex(),
            "packets": 0,
            "frames": 0,
            "keyframes": 0,
            "dts": [],
        }
    flushed = set()
    try:
        for packet in src.demux():
            track = info[packet.stream.type]
            if packet.dts is None:  # the empty packet that flushes the decoder at the end
                track["frames"] += len(packet.decode())
                flushed.add(packet.stream.type)
                continue
            track["packets"] += 1
            track["keyframes"] += int(packet.is_keyframe)
            track["dts"].append(round(packet.dts * packet.time_base * 1000))
            track["frames"] += len(packet.decode())
    except av.error.FFmpegError as exc:  # the publisher hung up: FFmpeg calls that EIO
        print(f"listener: {exc}", file=sys.stderr)
    for stream in src.streams:
        if stream.type not in flushed:
            info[stream.type]["frames"] += len(stream.codec_context.decode(None))
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("url")
    ap.add_argument("--timeout", type=int, default=30, help="seconds to wait for a publisher")
    args = ap.parse_args()
    print(json.dumps(listen(args.url, args.timeout)))


if __name__ == "__main__":
    main()
