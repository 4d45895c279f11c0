"""Real ffmpeg (and PyAV) publishing into a real server that transcodes and packages LL-HLS."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import m3u8
import pytest
from sqlalchemy import select

from mediaserver.live import LiveStream, MediaKind, MediaPacket
from storage.models import Stream, StreamStatus
from tests.conftest import make_channel, make_source, push, rtmp_url, running_server, transcoding

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SEGMENT = 2.0


@pytest.fixture(scope="session")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Short H.264 + AAC sources made once; publishers push them with -re -c copy."""
    out = tmp_path_factory.mktemp("sources")
    return {
        name: make_source(out / f"{name}.flv", size=size, seconds=seconds, bitrate="3M")
        for name, size, seconds in (
            ("1080p", "1920x1080", 6),
            ("720p", "1280x720", 5),
            ("long720p", "1280x720", 30),
        )
    }


@pytest.fixture
def transcode_env(settings_env: dict[str, str]) -> dict[str, str]:
    return transcoding(settings_env)


async def wait_row(server, predicate, timeout: float = 90.0) -> Stream:
    deadline = time.monotonic() + timeout
    while True:
        async with server.db.session() as db:
            rows = list((await db.execute(select(Stream).order_by(Stream.id))).scalars())
        if rows and predicate(rows[-1]):
            return rows[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"stream row never matched: {rows[-1:]}")
        await asyncio.sleep(0.2)


def tap_video(server, keep) -> None:
    """Hand every video packet the server receives to ``keep``, through a subscription."""

    def started(stream: LiveStream) -> None:
        sub = stream.subscribe("test", maxsize=100_000)

        async def drain() -> None:
            while (item := await sub.get()) is not None:
                if isinstance(item, MediaPacket) and item.kind is MediaKind.VIDEO:
                    keep(item)

        asyncio.get_running_loop().create_task(drain())

    server.registry.on_started(started)


class PartLog:
    """Collects every part and segment the server puts on the live edge."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from transcode.edge import RenditionEdge

        self.parts: dict[str, list] = {}
        self.inits: dict[str, bytes] = {}
        log = self
        orig_part, orig_seg = RenditionEdge.add_part, RenditionEdge.add_segment

        def add_part(edge, part):
            log.inits[edge.name] = edge.init
            log.parts.setdefault(edge.name, []).append(part)
            return orig_part(edge, part)

        def add_segment(edge, segment, window):
            log.last_playlists[edge.name] = edge.playlist.render()
            return orig_seg(edge, segment, window)

        self.last_playlists: dict[str, str] = {}
        monkeypatch.setattr(RenditionEdge, "add_part", add_part)
        monkeypatch.setattr(RenditionEdge, "add_segment", add_segment)


def ffprobe_frames(data: bytes, tmp: Path) -> list[dict]:
    path = tmp / f"probe-{time.monotonic_ns()}.mp4"
    path.write_bytes(data)
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time,flags",
            "-of",
            "json",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)["packets"]


def decode_all(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data), "r") as container:
        return list(container.decode(video=0))


def codec_string_from_init(init: bytes) -> str:
    with av.open(io.BytesIO(init), "r") as container:
        extradata = container.streams.video[0].codec_context.extradata
    return f"avc1.{extradata[1]:02x}{extradata[2]:02x}{extradata[3]:02x}"


def check_vod(server, row: Stream, expected_renditions: int, tmp: Path) -> dict[str, list[float]]:
    """The VOD on disk: master + media playlists parse, segments decode and line up."""
    base = server.settings.data_dir / row.vod_path
    master = m3u8.load(str(base))
    assert len(master.playlists) == expected_renditions
    heights = [p.stream_info.resolution[1] for p in master.playlists]
    assert heights == sorted(heights, reverse=True)
    starts: dict[str, list[float]] = {}
    for p in master.playlists:
        info = p.stream_info
        assert info.bandwidth > 0 and info.average_bandwidth > 0 and info.frame_rate > 0
        media_path = base.parent / p.uri
        media = m3u8.load(str(media_path))
        assert media.playlist_type == "vod" and media.is_endlist
        init = (media_path.parent / media.segment_map[0].uri).read_bytes()
        assert info.codecs.split(",")[0] == codec_string_from_init(init)
        assert "mp4a.40.2" in info.codecs
        name = media_path.parent.name
        starts[name] = []
        for i, seg in enumerate(media.segments):
            data = (media_path.parent / seg.uri).read_bytes()
            if i < len(media.segments) - 1:  # the last one ends where the publisher stopped
                assert abs(seg.duration - SEGMENT) <= 0.1 * SEGMENT, (name, i, seg.duration)
            frames = ffprobe_frames(init + data, tmp)
            assert frames and frames[0]["flags"].startswith("K"), (name, i)
            starts[name].append(float(frames[0]["pts_time"]))
            decoded = decode_all(init + data)
            assert len(decoded) == len(frames)
            assert decoded[0].height == info.resolution[1]
    return starts


def assert_aligned(starts: dict[str, list[float]]) -> None:
    names = list(starts)
    for other in names[1:]:
        assert len(starts[other]) == len(starts[names[0]])
        for a, b in zip(starts[names[0]], starts[other], strict=False):
            assert abs(a - b) <= 1 / 30 + 1e-6, (names[0], other, a, b)


def frames_dropped(server: Any) -> float:
    """Frames and packets the live path dropped (encoders behind, slow consumers)."""
    names = ("aethex_transcode_dropped_frames", "aethex_live_dropped_packets")
    return sum(
        sample.value
        for metric in server.metrics.registry.collect()
        if metric.name in names
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def test_1080p_source_gives_three_aligned_renditions_and_a_vod(
    transcode_env, sources, tmp_path, monkeypatch
) -> None:
    parts = PartLog(monkeypatch)
    env = {**transcode_env, "AETHEX_TRANSCODE__PASSTHROUGH": "never"}
    async with running_server(env) as server:
        _, key = await make_channel(server, "hd-live", "hana")
        proc = await push(sources["1080p"], rtmp_url(server, key))
        await wait_row(server, lambda r: r.status is StreamStatus.LIVE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        row = await wait_row(server, lambda r: r.status is StreamStatus.ARCHIVED)

        # Every playlist the live edge served parses, with the LL-HLS tags.
        assert set(parts.last_playlists) == {"1080p", "720p", "480p"}
        for text in parts.last_playlists.values():
            pl = m3u8.loads(text)
            assert pl.version >= 9 and pl.target_duration >= SEGMENT
            assert pl.server_control.can_block_reload == "YES"
            # PART-TARGET is the configured part duration, raised only to cover a longer part
            # (RFC 8216bis: no part may exceed it), which only a gap of frames the encoders
            # dropped (counted) can make: a slower machine may drop, never silently.
            longest = max(float(d) for d in re.findall(r"#EXT-X-PART:DURATION=([0-9.]+)", text))
            assert pl.part_inf.part_target >= longest - 0.001
            if not frames_dropped(server):
                assert pl.part_inf.part_target == pytest.approx(0.333, abs=0.01)
            assert "#EXT-X-PRELOAD-HINT" in text and "#EXT-X-PROGRAM-DATE-TIME" in text
        # Every part is valid fMP4; independent parts decode on their own; parts make segments.
        for name, plist in parts.parts.items():
            init = parts.inits[name]
            for part in plist:
                with av.open(io.BytesIO(init + part.data), "r") as c:
                    assert sum(1 for _ in c.demux(video=0)) >= 1
                assert ffprobe_frames(init + part.data, tmp_path), (name, part.segment, part.index)
                if part.independent:
                    assert decode_all(init + part.data)[0].key_frame

        starts = check_vod(server, row, 3, tmp_path)
        assert_aligned(starts)
        # The VOD holds what was sent (6 s), within half a second.
        assert abs(row.vod_duration_seconds - 6.0) <= 0.5
        assert row.vod_available and row.ended_at is not None
        assert (server.settings.data_dir / row.thumbnail_path).read_bytes()[:2] == b"\xff\xd8"
        for name in ("1080p", "720p", "480p"):
            assert (
                server.metrics.sample(
                    "aethex_hls_segments_total", channel="hd-live", rendition=name
                )
                >= 3
            )
            assert (
                server.metrics.sample("aethex_transcode_fps", channel="hd-live", rendition=name)
                is not None
            )
        assert server.metrics.sample("aethex_transcode_speed", channel="hd-live") is not None


async def test_720p_source_gives_two_renditions(transcode_env, sources, tmp_path) -> None:
    async with running_server(transcode_env) as server:
        _, key = await make_channel(server, "sd-live", "ivan")
        proc = await push(sources["720p"], rtmp_url(server, key))
        await asyncio.wait_for(proc.communicate(), 60)
        row = await wait_row(server, lambda r: r.status is StreamStatus.ARCHIVED)
        assert_aligned(check_vod(server, row, 2, tmp_path))
        assert abs(row.vod_duration_seconds - 5.0) <= 0.5


async def test_passthrough_auto_copies_the_top_rung(transcode_env, sources, tmp_path) -> None:
    sent: list[bytes] = []
    async with running_server({**transcode_env, "AETHEX_TRANSCODE__PASSTHROUGH": "auto"}) as server:
        tap_video(server, lambda p: sent.append(p.data))
        _, key = await make_channel(server, "copy-live", "jill")
        proc = await push(sources["1080p"], rtmp_url(server, key))
        await asyncio.wait_for(proc.communicate(), 60)
        row = await wait_row(server, lambda r: r.status is StreamStatus.ARCHIVED)
        top = server.settings.data_dir / f"streams/{row.id}/1080p"
        media = m3u8.load(str(top / "index.m3u8"))
        init = (top / "init.mp4").read_bytes()
        copied = []
        for seg in media.segments:
            with av.open(io.BytesIO(init + (top / seg.uri).read_bytes()), "r") as c:
                copied += [bytes(p) for p in c.demux(video=0) if p.size]
        # Every copied sample is a source packet, byte for byte, in order. On a loaded machine a
        # rung may lose frames up to a keyframe (counted), so compare as a subsequence.
        it = iter(sent)
        assert all(any(c == s for s in it) for c in copied), "top rung is not a copy"
        dropped = (
            server.metrics.sample(
                "aethex_transcode_dropped_frames_total", channel="copy-live", rendition="1080p"
            )
            or 0
        ) + (
            server.metrics.sample(
                "aethex_live_dropped_packets_total", channel="copy-live", consumer="transcoder"
            )
            or 0
        )
        assert len(copied) >= len(sent) - 1 - dropped


async def test_hevc_source_becomes_h264_renditions(transcode_env, tmp_path) -> None:
    async with running_server(transcode_env) as server:
        _, key = await make_channel(server, "hevc-live", "kim")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.pyav_publisher",
            rtmp_url(server, key),
            "--codec",
            "libx265",
            "--seconds",
            "5",
            cwd=ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode == 0, err.decode()
        row = await wait_row(server, lambda r: r.status is StreamStatus.ARCHIVED)
        assert row.source_info["video_codec"] == "hvc1"
        base = server.settings.data_dir / row.vod_path
        master = m3u8.load(str(base))
        assert [p.stream_info.codecs.split(".")[0] for p in master.playlists] == ["avc1"]
        check_vod(server, row, 1, tmp_path)


async def test_publisher_killed_keeps_everything_received(transcode_env, sources, tmp_path) -> None:
    received: list[int] = []
    async with running_server(transcode_env) as server:
        tap_video(server, lambda p: received.append(p.dts))
        _, key = await make_channel(server, "kill-live", "leo")
        proc = await push(sources["long720p"], rtmp_url(server, key))
        await wait_row(server, lambda r: r.status is StreamStatus.LIVE)
        await asyncio.sleep(5.0)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        row = await wait_row(server, lambda r: r.status is StreamStatus.ARCHIVED)
        got = (received[-1] - received[0]) / 1000 + 1 / 30
        assert got > 3.0
        assert abs(row.vod_duration_seconds - got) <= 0.5, (row.vod_duration_seconds, got)
        check_vod(server, row, 2, tmp_path)


async def test_recording_off_goes_offline_and_removes_files(transcode_env, sources) -> None:
    env = {
        **transcode_env,
        "AETHEX_RECORDING__ENABLED": "false",
        "AETHEX_HLS__LIVE_SEGMENTS": "3",
        "AETHEX_HLS__RECONNECT_GRACE": "1",
    }
    async with running_server(env) as server:
        _, key = await make_channel(server, "norec-live", "mia")
        proc = await push(sources["720p"], rtmp_url(server, key))
        row = await wait_row(server, lambda r: r.status is StreamStatus.LIVE)
        stream_dir = server.settings.data_dir / "streams" / str(row.id)
        await asyncio.wait_for(proc.communicate(), 60)
        row = await wait_row(server, lambda r: r.status is StreamStatus.OFFLINE)
        assert not row.vod_available and row.vod_path is None
        # While live, only the window is kept on disk.
        for rendition in stream_dir.iterdir():
            assert len(list(rendition.glob("seg*.m4s"))) <= 3
        # After the grace and one window (1 + 3 x 2 s) the files are gone, and so is the edge.
        deadline = time.monotonic() + 15
        while stream_dir.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert not stream_dir.exists()
        assert server.broadcasts.edges.get("norec-live") is None


async def test_a_channel_ladder_overrides_the_default(transcode_env, sources, tmp_path) -> None:
    async with running_server(transcode_env) as server:
        channel_id, key = await make_channel(server, "own-live", "ned")
        async with server.db.session() as db:
            from storage.models import Channel

            channel = await db.get(Channel, channel_id)
            channel.ladder = [{"name": "low", "height": 360, "fps": 15, "video_kbps": 400}]
            await db.commit()
        proc = await push(sources["720p"], rtmp_url(server, key))
        await asyncio.wait_for(proc.communicate(), 60)
        row = await wait_row(server, lambda r: r.status is StreamStatus.ARCHIVED)
        master = m3u8.load(str(server.settings.data_dir / row.vod_path))
        assert [(p.uri, p.stream_info.resolution) for p in master.playlists] == [
            ("low/index.m3u8", (640, 360))
        ]
        assert master.playlists[0].stream_info.frame_rate == pytest.approx(15, abs=0.5)
        thumb = server.settings.data_dir / row.thumbnail_path
        with av.open(str(thumb)) as c:
            frame = next(c.decode(video=0))
        assert frame.width == 320 and frame.height == 180


async def test_reconnecting_publisher_continues_the_playlists(transcode_env, sources) -> None:
    """An encoder that comes back within hls.reconnect_grace continues the live playlists after
    a discontinuity (numbers go on, a new EXT-X-MAP); each session still gets its own VOD."""
    env = {**transcode_env, "AETHEX_HLS__RECONNECT_GRACE": "8"}
    async with running_server(env) as server:
        _, key = await make_channel(server, "again-live", "otto")
        first = await push(sources["720p"], rtmp_url(server, key))
        await asyncio.wait_for(first.communicate(), 60)
        row1 = await wait_row(server, lambda r: r.status is StreamStatus.ARCHIVED)
        edge = server.broadcasts.edges.get("again-live")
        assert edge is not None and not edge.ended  # waiting for a reconnect
        before = edge.renditions["720p"].playlist.next_msn

        second = await push(sources["720p"], rtmp_url(server, key))
        row2 = await wait_row(server, lambda r: r.id != row1.id and r.status is StreamStatus.LIVE)
        deadline = time.monotonic() + 20
        while edge.renditions["720p"].playlist.next_msn < before + 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert server.broadcasts.edges.get("again-live") is edge
        text = edge.renditions["720p"].playlist.render()
        pl = m3u8.loads(text)
        assert pl.media_sequence <= before - 1  # the first session's segments are still listed
        assert "#EXT-X-DISCONTINUITY" in text
        assert '#EXT-X-MAP:URI="init.mp4"' in text and '#EXT-X-MAP:URI="init1.mp4"' in text
        assert text.index("#EXT-X-DISCONTINUITY") < text.index("init1.mp4")
        assert edge.renditions["720p"].inits["init1.mp4"][4:8] == b"ftyp"

        await asyncio.wait_for(second.communicate(), 60)
        row2 = await wait_row(
            server, lambda r: r.id == row2.id and r.status is StreamStatus.ARCHIVED
        )
        assert abs(row2.vod_duration_seconds - 5.0) <= 0.5
        vod = (server.settings.data_dir / f"streams/{row2.id}/720p/index.m3u8").read_text()
        assert '#EXT-X-MAP:URI="init1.mp4"' in vod and "#EXT-X-DISCONTINUITY" not in vod
        assert (server.settings.data_dir / f"streams/{row2.id}/720p/init1.mp4").exists()
        # With nobody back within the grace, the playlists end.
        deadline = time.monotonic() + 15
        while not edge.ended:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        assert edge.renditions["720p"].playlist.render().rstrip().endswith("#EXT-X-ENDLIST")
