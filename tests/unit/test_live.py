"""The live registry and its bounded consumer queues: a slow consumer never blocks ingest."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest

from mediaserver.live import AlreadyLive, CodecConfig, LiveRegistry, MediaKind, MediaPacket

V, A = MediaKind.VIDEO, MediaKind.AUDIO
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def vid(dts: int, key: bool = False) -> MediaPacket:
    return MediaPacket(V, "avc1", dts, dts, key, b"v%d" % dts)


def aud(dts: int) -> MediaPacket:
    return MediaPacket(A, "mp4a", dts, dts, True, b"a%d" % dts)


def make(queue: int = 8):
    drops: list[tuple[str, str, int]] = []
    reg = LiveRegistry(queue, on_drop=lambda ch, c, n: drops.append((ch, c, n)))
    started, ended = [], []
    reg.on_started(started.append)
    reg.on_ended(ended.append)
    s = reg.start(channel_id=1, slug="chan", stream_id=10, started_at=NOW)
    return reg, s, drops, started, ended


def test_start_end_and_listeners() -> None:
    reg, s, _, started, ended = make()
    assert reg.get("chan") is s and len(reg) == 1 and started == [s]
    with pytest.raises(AlreadyLive):
        reg.start(channel_id=1, slug="chan", stream_id=11, started_at=NOW)
    reg.end(s)
    assert reg.get("chan") is None and ended == [s] and s.ended


def test_broken_listener_does_not_break_registry() -> None:
    reg = LiveRegistry()
    reg.on_started(lambda s: 1 / 0)
    assert reg.start(channel_id=1, slug="x", stream_id=1, started_at=NOW) is reg.get("x")


async def test_new_consumer_gets_configs_then_starts_at_keyframe() -> None:
    _, s, drops, _, _ = make()
    vc = CodecConfig(V, "avc1", b"avcC")
    s.set_config(vc)
    s.publish(vid(0, True))
    sub = s.subscribe("rung")
    s.publish(vid(33))  # mid-GOP: skipped, not counted as loss
    s.publish(aud(40))
    s.publish(vid(66, True))
    s.end()
    got = [await sub.get() for _ in range(4)]
    assert got == [vc, aud(40), vid(66, True), None]
    assert await sub.get() is None  # end stays visible
    assert len(sub) and sub.get_nowait() is None  # and to the call that does not wait
    assert sub.dropped == 0 and drops == []


def test_overflow_drops_to_next_keyframe_and_counts() -> None:
    _, s, drops, _, _ = make(queue=4)
    sub = s.subscribe("slow")
    ac = CodecConfig(A, "mp4a", b"\x12\x10", 44100, 2)
    s.set_config(ac)
    s.publish(vid(0, True))
    s.publish(vid(1))
    s.publish(vid(2))  # queue: config + 3 packets = 4 -> full
    s.publish(vid(3))  # overflow: 3 queued packets lost + this one; config kept
    s.publish(vid(4))  # waiting for a keyframe: lost
    s.publish(aud(5))  # audio resumes at once
    s.publish(vid(6))  # still waiting for a keyframe: lost
    s.publish(vid(7, True))
    items = []
    while len(sub):
        items.append(sub.get_blocking(0))
    assert items == [ac, aud(5), vid(7, True)]
    assert sub.dropped == 6
    assert sum(n for _, _, n in drops) == 6 and drops[0][:2] == ("chan", "slow")


def test_publisher_never_blocks_on_a_stalled_thread_consumer() -> None:
    _, s, _, _, _ = make(queue=16)
    sub = s.subscribe("stalled")
    for i in range(10_000):
        s.publish(vid(i, i % 30 == 0))
    assert len(sub) <= 16 and sub.dropped > 9000


def test_thread_consumer_receives_in_order() -> None:
    _, s, _, _, _ = make(queue=100_000)
    sub = s.subscribe("thread")
    got: list[int] = []

    def consume() -> None:
        while (item := sub.get_blocking(5)) is not None:
            got.append(item.dts)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(2000):
        s.publish(vid(i, i == 0))
    s.end()
    t.join(5)
    assert got == list(range(2000))


def test_a_waiting_thread_consumer_is_woken_by_every_put() -> None:
    """put takes no lock unless a consumer thread is blocked: hand packets over one at a time
    (each while the consumer may be falling asleep, or already is). A lost wake-up leaves the
    consumer asleep until its 120 s timeout, and the hand-over fails after 20 s; a correct put
    wakes it in microseconds."""
    _, s, _, _, _ = make(queue=16)
    sub = s.subscribe("thread")
    got: list[int] = []
    took = threading.Semaphore(0)
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            while (item := sub.get_blocking(120)) is not None:
                got.append(item.dts)
                took.release()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            took.release()

    t = threading.Thread(target=consume)
    t.start()
    for i in range(3000):
        s.publish(vid(i, i == 0))
        assert took.acquire(timeout=20), f"packet {i} was not taken: a lost wake-up"
        assert not errors, errors
    s.end()
    t.join(120)
    assert got == list(range(3000))


async def test_async_consumer_wakes_up() -> None:
    _, s, _, _, _ = make()
    sub = s.subscribe("ws")
    task = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    s.publish(vid(0, True))
    assert await asyncio.wait_for(task, 1) == vid(0, True)


def test_stats_track_health() -> None:
    _, s, _, _, _ = make()
    for i in range(90):
        s.publish(vid(i * 33, i % 60 == 0), now=i / 30)
    st = s.stats.snapshot()
    assert st["video_frames"] == 90 and st["keyframes"] == 2
    assert st["keyframe_interval_ms"] == 60 * 33
    assert 29 < st["frame_rate"] < 31
    assert st["bitrate_kbps"] > 0
