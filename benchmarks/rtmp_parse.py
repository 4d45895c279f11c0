"""Parse throughput of the sans-I/O RTMP server core on a realistic publish stream.

Measures ``ServerConnection.receive_data`` (chunk de-multiplexing, FLV tag parsing, event
creation) after handshake, connect and an accepted publish, over 6 Mbit/s-like H.264 (~25 KB
per frame at 30 fps, 4x keyframes every 2 s) + 128 kbit/s AAC, fed in 64 KiB reads, with the
publisher's chunk size at 4096 and at 128 bytes. Reports MB/s of input bytes (median of
repeated runs) and, as the reference measured in the same run on the same machine, the speed of
simply copying the same bytes in the same 64 KiB reads into a buffer, so figures from different
machines can be compared by ratio.

    .venv/bin/python benchmarks/rtmp_parse.py [seconds]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mediaserver.rtmp import (  # noqa: E402
    ConnectRequested,
    PublishRequested,
    ServerConnection,
)
from tests.rtmp_client import (  # noqa: E402
    ASC,
    AVCC,
    RtmpTestClient,
    aac_sequence_header,
    avc_sequence_header,
    media_messages,
)

READ_SIZE = 64 * 1024
STREAM_SECONDS = 10.0
GOALS_MB_S = {4096: 1000.0, 128: 150.0}


def _setup(chunk_size: int) -> tuple[list[bytes], bytes]:
    """(session bytes up to an accepted publish in 64 KiB reads, media bytes)."""
    client = RtmpTestClient(chunk_size)
    setup = [
        client.c0c1(),
        client.c2(),
        client.set_chunk_size(),
        client.connect(),
        client.release_stream("key"),
        client.fc_publish("key"),
        client.create_stream(),
        client.publish(1, "key"),
        client.video(1, 0, avc_sequence_header(AVCC)),
        client.audio(1, 0, aac_sequence_header(ASC)),
    ]
    media = b"".join(media_messages(client, 1, seconds=STREAM_SECONDS))
    return setup, media


def _connected(setup: list[bytes]) -> ServerConnection:
    conn = ServerConnection()
    for segment in setup:
        for event in conn.receive_data(segment):
            if isinstance(event, ConnectRequested):
                conn.accept_connect()
            elif isinstance(event, PublishRequested):
                conn.accept_publish(event.stream_id)
    conn.data_to_send()
    return conn


def _one_run(setup: list[bytes], reads: list[bytes]) -> tuple[float, int]:
    conn = _connected(setup)
    receive = conn.receive_data
    events = 0
    start = time.perf_counter()
    for read in reads:
        events += len(receive(read))
    elapsed = time.perf_counter() - start
    return elapsed, events


def _copy_run(reads: list[bytes]) -> float:
    buf = bytearray()
    start = time.perf_counter()
    for read in reads:
        buf += read
        del buf[: len(read) - 100]
    return time.perf_counter() - start


def measure(chunk_size: int, duration_s: float) -> dict[str, float]:
    setup, media = _setup(chunk_size)
    reads = [media[i : i + READ_SIZE] for i in range(0, len(media), READ_SIZE)]
    mb = len(media) / 1e6
    speeds = []
    copy_speeds = []
    events = 0
    deadline = time.perf_counter() + duration_s
    while len(speeds) < 3 or (time.perf_counter() < deadline and len(speeds) < 1000):
        elapsed, events = _one_run(setup, reads)
        speeds.append(mb / elapsed)
        copy_speeds.append(mb / _copy_run(reads))
    parse = statistics.median(speeds)
    copy = statistics.median(copy_speeds)
    return {
        "chunk_size": chunk_size,
        "mb_s": round(parse, 1),
        "goal_mb_s": GOALS_MB_S[chunk_size],
        "goal_ratio": round(parse / GOALS_MB_S[chunk_size], 2),
        "copy_mb_s": round(copy, 1),
        "ratio_to_copy": round(parse / copy, 4),
        "runs": len(speeds),
        "input_mb": round(mb, 2),
        "events_per_run": events,
        "stream_realtime_factor": round(parse / (mb / STREAM_SECONDS), 1),
    }


def run(duration_s: float = 3.0) -> dict[str, dict[str, float]]:
    """Median parse throughput (MB/s of input) at 4096- and 128-byte chunks."""
    return {f"chunk_{size}": measure(size, duration_s / 2) for size in (4096, 128)}


def main() -> None:
    duration = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    results = run(duration)
    print(
        f"RTMP parse throughput (ServerConnection.receive_data, {READ_SIZE // 1024} KiB reads, "
        f"Python {sys.version.split()[0]})"
    )
    for _name, r in results.items():
        status = "ok" if r["mb_s"] >= r["goal_mb_s"] else "BELOW GOAL"
        print(
            f"  chunk size {r['chunk_size']:>5}: {r['mb_s']:8.1f} MB/s  "
            f"(goal {r['goal_mb_s']:.0f}: x{r['goal_ratio']:.2f} {status}; "
            f"reference copy {r['copy_mb_s']:.0f} MB/s, ratio {r['ratio_to_copy']:.3f}; "
            f"{r['stream_realtime_factor']:.0f}x real time; {r['runs']} runs)"
        )


if __name__ == "__main__":
    main()
