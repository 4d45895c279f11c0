"""Real ffmpeg (and PyAV) publishing real RTMP into a real server on a free port."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from mediaserver.live import CodecConfig, LiveStream, MediaKind, MediaPacket
from storage.models import Stream, StreamStatus
from tests.conftest import make_channel, rtmp_url, start_ffmpeg

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


class Recorder:
    """Subscribes to every stream that goes live and keeps what it receives."""

    def __init__(self, server) -> None:
        self.items: dict[str, list[object]] = {}
        self.streams: dict[str, LiveStream] = {}
        self.tasks: list[asyncio.Task[None]] = []
        server.registry.on_started(self._started)

    def _started(self, stream: LiveStream) -> None:
        self.streams[stream.slug] = stream
        items = self.items.setdefault(stream.slug, [])
        sub = stream.subscribe("test", maxsize=100_000)

        async def drain() -> None:
            while (item := await sub.get()) is not None:
                items.append(item)

        self.tasks.append(asyncio.get_running_loop().create_task(drain()))

    def packets(self, slug: str, kind: MediaKind) -> list[MediaPacket]:
        return [
            p for p in self.items.get(slug, []) if isinstance(p, MediaPacket) and p.kind is kind
        ]


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def stream_rows(server) -> list[Stream]:
    async with server.db.session() as db:
        return list((await db.execute(select(Stream))).scalars())


async def test_ffmpeg_publish_h264_aac(server) -> None:
    rec = Recorder(server)
    _, key = await make_channel(server, "alice-live")
    proc = await start_ffmpeg(rtmp_url(server, key), seconds=3)
    await wait_for(lambda: server.registry.get("alice-live") is not None)
    live = server.registry.get("alice-live")
    assert server.metrics.sample("aethex_streams_live") == 1
    rows = await stream_rows(server)
    assert [r.status for r in rows] == [StreamStatus.LIVE] and rows[0].started_at is not None

    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    await wait_for(lambda: server.registry.get("alice-live") is None)

    # Codec configs as the server understood them.
    assert live.video_config is not None and live.video_config.codec == "avc1"
    assert live.video_config.data[0] == 1  # avcC configurationVersion
    assert live.audio_config is not None and live.audio_config.codec == "mp4a"
    assert (live.audio_config.sample_rate, live.audio_config.channels) == (48000, 2)
    assert live.resolution == (1280, 720)
    configs = [i for i in rec.items["alice-live"] if isinstance(i, CodecConfig)]
    assert {c.codec for c in configs} == {"avc1", "mp4a"}

    # Timed packets whose timestamps advance, about 3 s of them.
    video = rec.packets("alice-live", MediaKind.VIDEO)
    audio = rec.packets("alice-live", MediaKind.AUDIO)
    assert len(video) >= 80 and len(audio) >= 120
    assert video[0].keyframe
    dts = [p.dts for p in video]
    assert dts == sorted(dts) and dts[-1] - dts[0] >= 2800
    assert all(p.pts >= p.dts for p in video)
    assert sum(p.keyframe for p in video) >= 3  # -g 30 at 30 fps
    adts = [p.dts for p in audio]
    assert adts == sorted(adts) and adts[-1] - adts[0] >= 2800

    # The row is closed with an end time and a duration; metrics saw the bytes.
    await wait_for(lambda: server.metrics.sample("aethex_streams_live") == 0)
    for _ in range(50):
        rows = await stream_rows(server)
        if rows[0].ended_at is not None:
            break
        await asyncio.sleep(0.1)
    assert rows[0].ended_at is not None and rows[0].status is not StreamStatus.LIVE
    assert 2.0 <= rows[0].duration_seconds <= 10.0
    assert server.metrics.sample("aethex_ingest_bytes_total", channel="alice-live") > 100_000

    # The operator reads the same figures over HTTP in Prometheus text format.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.http_port}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    for line in (
        "aethex_streams_live 0.0",
        'aethex_ingest_bytes_total{channel="alice-live"}',
        "aethex_rtmp_connections ",
    ):
        assert line in text


async def test_wrong_key_is_refused_fast_and_writes_nothing(server) -> None:
    await make_channel(server, "bob-live", "bob")
    t0 = time.monotonic()
    proc = await start_ffmpeg(rtmp_url(server, "live_not-the-right-key"), seconds=10)
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0
    assert elapsed < 5.0, f"ffmpeg took {elapsed:.1f}s to give up"
    assert await stream_rows(server) == []
    assert len(server.registry) == 0
    assert server.metrics.sample("aethex_rtmp_rejected_total", reason="bad_key") == 1


async def test_second_publisher_refused_while_first_keeps_going(server) -> None:
    rec = Recorder(server)
    _, key = await make_channel(server, "carol-live", "carol")
    first = await start_ffmpeg(rtmp_url(server, key), seconds=6)
    await wait_for(lambda: len(rec.packets("carol-live", MediaKind.VIDEO)) > 10)

    t0 = time.monotonic()
    second = await start_ffmpeg(rtmp_url(server, key), seconds=6)
    await asyncio.wait_for(second.communicate(), 10)
    assert second.returncode != 0 and time.monotonic() - t0 < 5.0
    assert server.metrics.sample("aethex_rtmp_rejected_total", reason="already_live") == 1

    before = len(rec.packets("carol-live", MediaKind.VIDEO))
    await asyncio.sleep(1.0)
    assert len(rec.packets("carol-live", MediaKind.VIDEO)) > before + 15
    assert server.registry.get("carol-live") is rec.streams["carol-live"]
    await asyncio.wait_for(first.communicate(), 30)
    assert first.returncode == 0
    assert len(await stream_rows(server)) == 1


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def _closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def test_garbage_and_stalled_clients_are_dropped_others_served(server) -> None:
    rec = Recorder(server)
    _, key = await make_channel(server, "dave-live", "dave")
    port = server.rtmp_port

    garbage = await asyncio.to_thread(_connect, port)
    garbage.sendall(b"\x03" + os.urandom(1536) + b"GET / HTTP/1.1\r\n\r\n" * 200)
    stalled = await asyncio.to_thread(_connect, port)
    stalled.sendall(b"\x03" + b"\x00" * 100)  # C0 + a partial C1, then nothing
    wrong_version = await asyncio.to_thread(_connect, port)
    wrong_version.sendall(b"\x47ET / HTTP/1.1\r\nHost: x\r\n\r\n")

    proc = await start_ffmpeg(rtmp_url(server, key), seconds=4)
    t0 = time.monotonic()
    assert await asyncio.to_thread(_closed_by_peer, wrong_version, 5)
    assert await asyncio.to_thread(_closed_by_peer, stalled, 5)
    assert time.monotonic() - t0 < 4.0  # handshake_timeout is 1.5 s in the test settings
    # The garbage client either got disconnected for a protocol error or stalls to a timeout.
    assert await asyncio.to_thread(_closed_by_peer, garbage, 8)
    for s in (garbage, stalled, wrong_version):
        s.close()

    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert len(rec.packets("dave-live", MediaKind.VIDEO)) > 60
    rejected = {
        reason: server.metrics.sample("aethex_rtmp_rejected_total", reason=reason) or 0
        for reason in ("protocol_error", "handshake_timeout", "publish_timeout", "idle_timeout")
    }
    assert rejected["handshake_timeout"] >= 1 and sum(rejected.values()) >= 3, rejected
    await wait_for(lambda: server.metrics.sample("aethex_rtmp_connections") == 0)


async def test_pyav_publishes_hevc_over_enhanced_rtmp(server) -> None:
    rec = Recorder(server)
    _, key = await make_channel(server, "erin-live", "erin")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.pyav_publisher",
        rtmp_url(server, key),
        "--codec",
        "libx265",
        "--seconds",
        "2",
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    await wait_for(lambda: "erin-live" in rec.streams and rec.streams["erin-live"].ended)
    live = rec.streams["erin-live"]
    assert live.video_config is not None and live.video_config.codec == "hvc1"
    assert live.video_config.data[0] == 1  # hvcC configurationVersion
    video = rec.packets("erin-live", MediaKind.VIDEO)
    assert len(video) >= 40 and video[0].keyframe and all(p.codec == "hvc1" for p in video)
    assert [p.dts for p in video] == sorted(p.dts for p in video)
    assert live.audio_config is not None and live.audio_config.codec == "mp4a"


async def test_unknown_application_is_refused(server) -> None:
    _, key = await make_channel(server, "frank-live", "frank")
    url = f"rtmp://127.0.0.1:{server.rtmp_port}/notlive/{key}"
    proc = await start_ffmpeg(url, seconds=5)
    await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode != 0
    assert server.metrics.sample("aethex_rtmp_rejected_total", reason="bad_app") == 1
    assert await stream_rows(server) == []


async def test_reconnecting_encoder_takes_over_a_stale_publisher(settings_env) -> None:
    """With rtmp.takeover_after set, a silent publisher is replaced by a new one with the key."""
    from tests.conftest import running_server

    async with running_server({**settings_env, "AETHEX_RTMP__TAKEOVER_AFTER": "1.0"}) as server:
        rec = Recorder(server)
        _, key = await make_channel(server, "gina-live", "gina")
        first = await start_ffmpeg(rtmp_url(server, key), seconds=20)
        try:
            await wait_for(lambda: len(rec.packets("gina-live", MediaKind.VIDEO)) > 10)
            first_stream = server.registry.get("gina-live")
            first.send_signal(signal.SIGSTOP)  # the encoder hangs; its TCP connection stays open
            await asyncio.sleep(1.5)
            second = await start_ffmpeg(rtmp_url(server, key), seconds=2)
            _, err = await asyncio.wait_for(second.communicate(), 30)
            assert second.returncode == 0, err.decode()
            assert server.metrics.sample("aethex_rtmp_rejected_total", reason="taken_over") == 1
            assert first_stream.ended
            second_stream = rec.streams["gina-live"]
            assert second_stream is not first_stream and second_stream.stats.video_frames >= 50
            rows = await stream_rows(server)
            assert len(rows) == 2 and rows[0].ended_at is not None
        finally:
            first.send_signal(signal.SIGCONT)
            first.kill()
            await first.wait()


async def test_a_steady_publisher_gets_a_read_low_water_mark_until_it_goes_quiet(server) -> None:
    """While video flows steadily the publisher's socket has SO_RCVLOWAT = rtmp.read_low_water
    (small audio frames wait for the next video data instead of waking ingest), media keeps
    arriving, and a publisher that goes quiet (stopped, SIGSTOP) has the mark dropped."""
    channel_id, key = await make_channel(server, "lowat", "lou")
    mark = server.settings.rtmp.read_low_water
    assert mark > 0
    proc = await start_ffmpeg(rtmp_url(server, key), seconds=60, size="640x360")
    try:
        await wait_for(lambda: channel_id in server.ingest.publishers, timeout=30)
        session = server.ingest.publishers[channel_id]
        await wait_for(lambda: session.low_water == mark, timeout=30)
        sock = session.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == mark
        stream = session.stream
        assert stream is not None
        audio, video = stream.stats.audio_frames, stream.stats.video_frames
        await wait_for(
            lambda: (
                stream.stats.audio_frames > audio + 50 and stream.stats.video_frames > video + 30
            ),
            timeout=30,
        )
        proc.send_signal(signal.SIGSTOP)  # quiet: the mark must go, releasing what it held
        try:
            await wait_for(lambda: session.low_water == 0, timeout=30)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1
        finally:
            proc.send_signal(signal.SIGCONT)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
