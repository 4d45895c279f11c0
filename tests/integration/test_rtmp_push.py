"""The asyncio RTMP publisher (mediaserver.restream) pushing real media into our real server.

A few seconds of ffmpeg-made H.264 + AAC FLV, demuxed with PyAV, go out through RtmpPublisher
in real time; the server must take the stream live, package it and serve its HLS playlists,
and what it received must be what was sent. Then the ways a push fails: a wrong key, nobody
listening, a destination that accepts TCP and never answers; and RTMPS through a TLS front
with a certificate the test makes (trusted through a CA file, refused without it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import m3u8
import pytest
from certs import self_signed

from mediaserver.live import CodecConfig, MediaKind, MediaPacket
from mediaserver.restream import PublishError, RtmpPublisher, client_ssl_context
from mediaserver.rtmp import (
    ConnectRequested,
    PublishRequested,
    PublishTarget,
    ServerConnection,
)
from tests.conftest import free_port, make_channel, make_source, running_server, transcoding

pytestmark = pytest.mark.integration

SLUG = "push-live"
LADDER = [{"name": "240p", "height": 240, "fps": 30, "video_kbps": 300}]


@pytest.fixture
async def hls_server(settings_env: dict[str, str]) -> AsyncIterator[Any]:
    """A server that packages HLS by copying a 240p H.264 source (no encoding: cheap)."""
    env = {
        **transcoding(settings_env),
        "AETHEX_TRANSCODE__PASSTHROUGH": "always",
        "AETHEX_TRANSCODE__LADDER": json.dumps(LADDER),
        "AETHEX_HLS__SEGMENT_DURATION": "1",
    }
    async with running_server(env) as srv:
        yield srv


def demux(path: Path) -> tuple[dict[str, bytes], list[tuple[str, int, int, bool, bytes]]]:
    """(configs by kind, packets as (kind, dts, pts, keyframe, data)) in file order."""
    with av.open(str(path)) as container:
        configs = {s.type: bytes(s.codec_context.extradata) for s in container.streams}
        packets = []
        for packet in container.demux():
            if packet.size == 0 or packet.dts is None:
                continue
            scale = packet.time_base * 1000
            dts = round(packet.dts * scale)
            pts = round(packet.pts * scale) if packet.pts is not None else dts
            packets.append((packet.stream.type, dts, pts, packet.is_keyframe, bytes(packet)))
    return configs, packets


def target(server: Any, key: str) -> PublishTarget:
    return PublishTarget.parse(f"rtmp://127.0.0.1:{server.rtmp_port}/live/{key}")


async def push(publisher: RtmpPublisher, configs: dict[str, bytes], packets: list) -> int:
    """Send configs and packets paced by their timestamps; return the video frames sent."""
    assert publisher.send_metadata({"width": 426.0, "height": 240.0, "framerate": 30.0})
    assert publisher.send_config(CodecConfig(MediaKind.VIDEO, "avc1", configs["video"]))
    assert publisher.send_config(CodecConfig(MediaKind.AUDIO, "mp4a", configs["audio"]))
    start = time.monotonic()
    sent = 0
    for kind, dts, pts, keyframe, data in packets:
        delay = dts / 1000 - (time.monotonic() - start)
        if delay > 0:
            await asyncio.sleep(delay)
        if kind == "video":
            packet = MediaPacket(MediaKind.VIDEO, "avc1", dts, pts, keyframe, data)
            sent += 1
        else:
            packet = MediaPacket(MediaKind.AUDIO, "mp4a", dts, dts, True, data)
        assert publisher.send_packet(packet)
    return sent


async def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_publisher_goes_live_with_hls(hls_server, tmp_path: Path) -> None:
    server = hls_server
    source = make_source(tmp_path / "src.flv", size="426x240", seconds=5, bitrate="300k")
    configs, packets = demux(source)
    _, key = await make_channel(server, SLUG)
    received: list[MediaPacket] = []

    def started(stream) -> None:
        sub = stream.subscribe("push-test", maxsize=100_000)

        async def drain() -> None:
            while (item := await sub.get()) is not None:
                if isinstance(item, MediaPacket):
                    received.append(item)

        tasks.append(asyncio.get_running_loop().create_task(drain()))

    tasks: list[asyncio.Task[None]] = []
    server.registry.on_started(started)
    publisher = await RtmpPublisher.open(target(server, key))
    assert publisher.server_info["code"] == "NetConnection.Connect.Success"
    await wait_for(lambda: server.registry.get(SLUG) is not None)
    live = server.registry.get(SLUG)

    base = f"http://127.0.0.1:{server.http_port}"
    sending = asyncio.get_running_loop().create_task(push(publisher, configs, packets))
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            async with http.get(f"{base}/hls/{SLUG}/master.m3u8") as r:
                if r.status == 200:
                    master = m3u8.loads(await r.text())
                    break
                assert r.status in (404, 503), r.status
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the master playlist never appeared")
        assert master.playlists
        async with http.get(f"{base}/hls/{SLUG}/{master.playlists[0].uri}") as r:
            assert r.status == 200
            media = m3u8.loads(await r.text())
        assert media.segments or media.segment_map
    video_sent = await sending
    await wait_for(lambda: sum(p.kind is MediaKind.VIDEO for p in received) == video_sent)
    assert publisher.dropped == 0 and not publisher.closed
    await publisher.close()
    assert await publisher.wait_closed() is None
    await wait_for(lambda: server.registry.get(SLUG) is None)
    for task in tasks:
        task.cancel()

    # The server got the configs and frames exactly as demuxed.
    assert live.video_config is not None and live.video_config.data == configs["video"]
    assert live.audio_config is not None and live.audio_config.data == configs["audio"]
    assert live.audio_config.sample_rate == 48000 and live.audio_config.channels == 2
    video = [p for p in received if p.kind is MediaKind.VIDEO]
    expected = [(d, p, k, data) for kind, d, p, k, data in packets if kind == "video"]
    assert [(p.dts, p.pts, p.keyframe, bytes(p.data)) for p in video] == expected
    audio = [p for p in received if p.kind is MediaKind.AUDIO]
    assert len(audio) == sum(kind == "audio" for kind, *_ in packets)


async def test_wrong_key_is_refused_without_quoting_it(server) -> None:
    await make_channel(server, SLUG)
    with pytest.raises(PublishError) as info:
        await RtmpPublisher.open(target(server, "not-the-key-0123"))
    assert info.value.stage == "publish"
    assert info.value.code == "NetStream.Publish.BadName"
    assert "not-the-key-0123" not in str(info.value)


async def test_nobody_listening() -> None:
    port = free_port()
    with pytest.raises(PublishError) as info:
        await RtmpPublisher.open(PublishTarget.parse(f"rtmp://127.0.0.1:{port}/live/k"))
    assert info.value.stage == "connect"


async def test_destination_that_never_answers_times_out() -> None:
    """TCP accepted, then silence: the setup deadline ends it, naming the stage."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        with pytest.raises(PublishError) as info:
            await RtmpPublisher.open(
                PublishTarget.parse(f"rtmp://127.0.0.1:{port}/live/k"), setup_timeout=0.5
            )
        assert info.value.stage == "handshake"
    finally:
        for writer in held:
            writer.close()
        listener.close()
        await listener.wait_closed()


# ---------------------------------------------------------------------------------------------
# RTMPS


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost/127.0.0.1 (it is its own CA)."""
    return self_signed(directory / "cert.pem", directory / "key.pem")


@contextlib.asynccontextmanager
async def tls_front(cert: Path, key: Path, backend_port: int) -> AsyncIterator[int]:
    """A TLS listener that pipes each connection to the plain RTMP port, as a TLS-terminating
    proxy in front of an RTMP server does."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend_port)
        for task in (pipe(reader, up_writer), pipe(up_reader, writer)):
            tasks.add(asyncio.get_running_loop().create_task(task))

    listener = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=context)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        for task in tasks:
            task.cancel()


async def test_rtmps_verifies_the_certificate(server, tmp_path: Path) -> None:
    cert, key_file = make_certificate(tmp_path)
    _, key = await make_channel(server, SLUG)
    async with tls_front(cert, key_file, server.rtmp_port) as port:
        url = PublishTarget.parse(f"rtmps://127.0.0.1:{port}/live/{key}")
        # Verification is on by default: a self-signed certificate is refused.
        with pytest.raises(PublishError) as info:
            await RtmpPublisher.open(url)
        assert info.value.stage == "connect" and "CERTIFICATE_VERIFY_FAILED" in str(info.value)
        # Trusting its CA file lets the publish through, host name still checked.
        publisher = await RtmpPublisher.open(url, ssl_context=client_ssl_context(str(cert)))
        await wait_for(lambda: server.registry.get(SLUG) is not None)
        await publisher.close()
        await wait_for(lambda: server.registry.get(SLUG) is None)


# ---------------------------------------------------------------------------------------------
# A destination that stops reading


class StallingDestination(asyncio.Protocol):
    """Our own server role behind a socket, accepting any publish, that stops reading as soon
    as the publish started: a destination that blackholes mid-stream."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.conn = ServerConnection()

    def data_received(self, data: bytes) -> None:
        events = self.conn.receive_data(data)
        while events:
            more = []
            for event in events:
                if isinstance(event, ConnectRequested):
                    more += self.conn.accept_connect()
                elif isinstance(event, PublishRequested):
                    self.conn.accept_publish(event.stream_id)
                    self.transport.pause_reading()
            events = more
        self.transport.write(self.conn.data_to_send())


async def test_stalled_destination_is_given_up_and_frames_dropped() -> None:
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(StallingDestination, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        publisher = await RtmpPublisher.open(
            PublishTarget.parse(f"rtmp://127.0.0.1:{port}/live/k"),
            stall_timeout=0.5,
            max_buffered=1 << 20,
        )
        frame = bytes(256 * 1024)
        refused_then = None
        dts = 0
        while not publisher.closed:
            keyframe = dts % 3000 == 0
            accepted = publisher.send_video("avc1", dts, dts, keyframe, frame)
            if not accepted and refused_then is None:
                refused_then = dts
                # Until the next keyframe, inter frames are dropped without being offered.
                assert not publisher.send_video("avc1", dts + 1, dts + 1, False, b"\x00")
            dts += 33
            await asyncio.sleep(0 if accepted else 0.005)
        error = await publisher.wait_closed()
        assert isinstance(error, PublishError) and error.stage == "publishing"
        assert "read nothing" in str(error)
        assert refused_then is not None and publisher.dropped >= 2
    finally:
        listener.close()
