"""The restream benchmark's delay probe (``benchmarks/lib/rtmp_probe``): the SEI that names a
frame survives among real NAL units; the match pairs frames by that name even when a relay
rebases timestamps and drops frames, and flags a timestamp offset that changes within a
connection; and the sender and receiver themselves, straight to each other over loopback,
match every frame with a small delay.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from benchmarks.lib import rtmp_probe as rp  # noqa: E402 - after the sys.path entry it needs


def _nal(kind: int, body: bytes) -> bytes:
    nal = bytes((kind,)) + body
    return len(nal).to_bytes(4, "big") + nal


def test_probe_sei_round_trip_among_nal_units() -> None:
    frame = _nal(0x09, b"\xf0") + _nal(0x65, bytes(range(256)) * 4)
    data = rp.probe_nal(1234, 987654321012) + frame
    assert rp.find_probe(data) == (1234, 987654321012)
    assert rp.find_probe(frame) is None
    # Another SEI (x264's own user data) before ours is skipped, not mistaken for it.
    other = _nal(0x06, b"\x05\x13" + b"x264-uuid-16byte" + b"abc" + b"\x80")
    assert rp.find_probe(other + data) == (1234, 987654321012)
    assert rp.find_probe(b"\x00\x00\x00\x09\x06") is None  # truncated: no crash


def _sent(n: int) -> list[rp.Sent]:
    # 30 fps millisecond timestamps (0, 33, 67, 100...), one frame every 33.3 ms from t=1 s.
    return [rp.Sent(i, i * 1000 // 30, 10**9 + i * 33_333_333, 0, i % 30 == 0) for i in range(n)]


def test_analyze_matches_by_index_despite_rebasing_and_drops() -> None:
    sent = _sent(90)
    arrivals = []
    # A relay that rebases to the first frame it forwards (frame 5), drops 40..59 and adds
    # 7 ms to each frame; a second destination of the same relay that adds 12 ms.
    for i in [*range(5, 40), *range(60, 90)]:
        s = sent[i]
        rebased = s.ts - sent[5].ts
        arrivals.append(rp.Arrival("a/x", 1, rebased, i, s.sent_ns, s.sent_ns + 7_000_000))
        arrivals.append(rp.Arrival("b/x", 2, s.ts, i, s.sent_ns, s.sent_ns + 12_000_000))
    arrivals.append(rp.Arrival("a/x", 1, 0, None, None, 0))  # a frame without a probe SEI
    t0, t1 = sent[10].sent_ns, sent[80].sent_ns  # the window: frames 10..79
    result = rp.analyze(sent, arrivals, t0, t1)
    a, b = result["a/x"], result["b/x"]
    assert (a.sent, a.matched, a.consistent, a.unnamed) == (70, 50, 50, 1)
    assert abs(a.p(50) - 7.0) < 1e-6 and abs(a.max - 7.0) < 1e-6
    assert (b.sent, b.matched) == (70, 50) and abs(b.p(95) - 12.0) < 1e-6
    both = rp.pooled("all", [a, b])
    assert (both.sent, both.matched, len(both.delays_ms)) == (140, 100, 100)
    assert "50/70 frames matched, timestamps consistent" in a.summary()


def test_analyze_flags_a_timestamp_offset_that_moves() -> None:
    sent = _sent(30)
    arrivals = [
        rp.Arrival("a/x", 1, s.ts + (0 if i < 20 else 40), i, s.sent_ns, s.sent_ns + 1_000_000)
        for i, s in enumerate(sent)
    ]
    d = rp.analyze(sent, arrivals)["a/x"]
    assert (d.matched, d.consistent) == (30, 20)
    assert "INCONSISTENT for 10" in d.summary()


def test_sender_to_receiver_over_loopback(tmp_path: Path) -> None:
    """The probe's own floor: no relay between them, every frame matched, small delays."""
    keyframe = _nal(0x65, b"\x88" * 20_000)
    packets = []
    for i in range(45):  # 1.5 s of 30 fps video with audio between the frames
        ts = i * 1000 // 30
        data = keyframe if i % 30 == 0 else _nal(1, b"\x9a" * 3000)
        packets.append(rp.Packet(True, ts, 0, i % 30 == 0, data))
        packets.append(rp.Packet(False, ts + 5, 0, True, b"\x21" * 300))
    media = rp.Media(b"\x01\x64\x00\x1f\xff\xe1", b"\x11\x90", packets, 1500)
    out = tmp_path / "arrivals.jsonl"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    ready = asyncio.Event()
    task: list[asyncio.Task[None]] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        task.append(loop.create_task(rp.serve(port, out, ready)))
        try:
            loop.run_until_complete(task[0])
        except asyncio.CancelledError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not ready.is_set():
        assert time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.01)
    sent = rp.publish(f"rtmp://127.0.0.1:{port}/probe1/key", media, 2.0)
    time.sleep(0.3)
    loop.call_soon_threadsafe(task[0].cancel)
    thread.join(10)
    arrivals = rp.read_arrivals(out)
    assert len(sent) == 60  # 2 s: the 1.5 s loop once and a half
    assert [s.ts for s in sent[44:47]] == [1466, 1500, 1533]  # the loop continues the clock
    d = rp.analyze(sent, arrivals)["probe1/key"]
    assert (d.sent, d.matched, d.consistent, d.connections) == (60, 60, 60, 1)
    assert d.p(50) < 50.0
