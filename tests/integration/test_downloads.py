"""MP4 download of a past broadcast (issue 13): ``GET /videos/{id}/download?rendition=``.

A real ffmpeg publishes over RTMP, the server records and archives the stream, and the owner
downloads it over real HTTP: ffprobe reads a valid MP4 with the recording's duration (within
a frame) and both streams, the moov comes before the mdat, and every video and audio packet
is byte for byte the sample the recording's segments hold (no re-encode). Ranges and HEAD
answer from the same plan. Who may download is checked on recordings written by the
project's own fMP4 writer: the owner and admins always; other viewers and anonymous clients
only when the channel allows downloads and the video is visible to them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import av
import m3u8
import pytest
from multidict import CIMultiDict
from sqlalchemy import select

from storage import queries
from storage.models import Channel, Stream, StreamStatus
from tests.accounts import register
from tests.conftest import make_channel, make_source, push, rtmp_url, running_server, transcoding
from tests.hls_media import encode_audio, encode_video
from transcode.hls.fmp4 import fragment, init_segment
from webapp.downloads import DOWNLOADS_KEY

pytestmark = pytest.mark.integration


async def wait_archived(server: Any, timeout: float = 90.0) -> Stream:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with server.db.session() as db:
            rows = list((await db.execute(select(Stream).order_by(Stream.id))).scalars())
        if rows and rows[-1].status is StreamStatus.ARCHIVED and rows[-1].vod_available:
            return rows[-1]
        assert asyncio.get_running_loop().time() < deadline, f"never archived: {rows[-1:]}"
        await asyncio.sleep(0.2)


def packets(data: bytes) -> dict[str, list[bytes]]:
    """Every video and audio packet's bytes, in decode order, read by PyAV."""
    out: dict[str, list[bytes]] = {"video": [], "audio": []}
    with av.open(io.BytesIO(data), "r") as container:
        for packet in container.demux():
            if packet.size:
                out[packet.stream.type].append(bytes(packet))
    return out


def box_order(data: bytes) -> list[bytes]:
    kinds, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        kinds.append(kind)
        pos += size
    return kinds


async def fetch(
    http: aiohttp.ClientSession, url: str, **kw: Any
) -> tuple[int, CIMultiDict[str], bytes]:
    async with http.get(url, **kw) as r:
        return r.status, CIMultiDict(r.headers), await r.read()


async def test_a_recorded_stream_downloads_as_the_same_samples_faststart(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    source = make_source(tmp_path / "src.flv", size="320x180", seconds=4, bitrate="400k")
    env = {**transcoding(settings_env), "AETHEX_TRANSCODE__PASSTHROUGH": "auto"}
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        root = await register(base, "root")
        alice = await register(base, "alice")
        try:
            _, key = await make_channel(server, "alice-live", "alice")
            proc = await push(source, rtmp_url(server, key))
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            row = await wait_archived(server)
            vod = server.settings.data_dir / Path(row.vod_path or "").parent
            rendition = m3u8.load(str(vod / "master.m3u8")).playlists[0].uri.split("/")[0]

            url = f"{base}/videos/{row.id}/download?rendition={rendition}"
            status, headers, body = await fetch(alice, url)
            assert status == 200, body[:200]
            assert headers["Content-Type"] == "video/mp4"
            assert int(headers["Content-Length"]) == len(body)
            assert headers["Content-Disposition"].startswith('attachment; filename="alice-live-')
            assert headers["Content-Disposition"].endswith(f'-{rendition}.mp4"')
            assert box_order(body)[:3] == [b"ftyp", b"moov", b"mdat"]

            out = tmp_path / "download.mp4"
            out.write_bytes(body)
            probe = json.loads(
                (
                    await asyncio.to_thread(
                        subprocess.run,
                        ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams"]
                        + [str(out)],
                        check=True,
                        capture_output=True,
                    )
                ).stdout
            )
            assert "mp4" in probe["format"]["format_name"]
            assert sorted(s["codec_name"] for s in probe["streams"]) == ["aac", "h264"]
            frame = 1 / 30
            assert abs(float(probe["format"]["duration"]) - row.vod_duration_seconds) <= frame
            decode = ["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"]
            await asyncio.to_thread(subprocess.run, decode, check=True)

            # No re-encode: the packets are the recording's samples, byte for byte.
            media = m3u8.load(str(vod / rendition / "index.m3u8"))
            recorded = (vod / rendition / "init.mp4").read_bytes() + b"".join(
                (vod / rendition / s.uri).read_bytes() for s in media.segments
            )
            want, got = packets(recorded), packets(body)
            assert got["video"] == want["video"] and len(want["video"]) >= 100
            assert got["audio"] == want["audio"] and want["audio"]

            # No rendition named: the first (highest) one. HEAD and Range from the same plan.
            status, _, whole = await fetch(alice, f"{base}/videos/{row.id}/download")
            assert status == 200 and whole == body
            async with alice.head(url) as r:
                assert r.status == 200 and int(r.headers["Content-Length"]) == len(body)
            etag = headers["ETag"]
            status, h, part = await fetch(alice, url, headers={"Range": "bytes=1000-99999"})
            assert status == 206 and part == body[1000:100000]
            assert h["Content-Range"] == f"bytes 1000-99999/{len(body)}"
            status, _, part = await fetch(alice, url, headers={"Range": "bytes=-500"})
            assert status == 206 and part == body[-500:]
            status, _, part = await fetch(
                alice, url, headers={"Range": "bytes=10-20", "If-Range": '"stale"'}
            )
            assert status == 200 and part == body
            status, _, part = await fetch(
                alice, url, headers={"Range": "bytes=10-20", "If-Range": etag}
            )
            assert status == 206 and part == body[10:21]
            status, h, _ = await fetch(alice, url, headers={"Range": f"bytes={len(body)}-"})
            assert status == 416 and h["Content-Range"] == f"bytes */{len(body)}"

            # The admin may too; a bad rendition name is a 400 in the API's error shape.
            status, _, other = await fetch(root, url)
            assert status == 200 and other == body
            for bad in ("../180p", "a" * 65, "1080p%20", "nope"):
                status, _, err_body = await fetch(
                    alice, f"{base}/videos/{row.id}/download?rendition={bad}"
                )
                assert status == 400, bad
                assert json.loads(err_body)["error"]["code"] == "invalid"
        finally:
            await root.close()
            await alice.close()


# ---------------------------------------------------------------------------------------------
# Who may download


def write_recording(directory: Path, copies: int = 1) -> None:
    """A 2 s recording (one rendition, 108p) made by the project's own fMP4 writer; with
    ``copies``, its one segment repeated (a longer, larger file)."""
    vinfo, video = encode_video(2.0)
    ainfo, audio = encode_audio(2.0)
    shift = video[0].pts - video[0].dts
    video = tuple(dataclasses.replace(p, dts=p.dts + shift) for p in video)
    folder = directory / "108p"
    folder.mkdir(parents=True)
    (folder / "init.mp4").write_bytes(init_segment(vinfo, ainfo))
    segment = fragment(1, video, [a for a in audio if a.dts >= 0])
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:2", "#EXT-X-PLAYLIST-TYPE:VOD"]
    lines.append('#EXT-X-MAP:URI="init.mp4"')
    for n in range(copies):
        (folder / f"seg{n}.m4s").write_bytes(segment)
        lines += ["#EXTINF:2.0,", f"seg{n}.m4s"]
    (folder / "index.m3u8").write_text("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n")
    (directory / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=192x108\n108p/index.m3u8\n"
    )


@dataclass
class Site:
    server: Any
    base: str
    users: dict[str, aiohttp.ClientSession]
    channel_id: int
    video: Stream

    async def status(self, who: str, ref: str | int | None = None) -> int:
        http = self.users[who]
        url = f"{self.base}/videos/{ref if ref is not None else self.video.id}/download"
        async with http.get(url) as r:
            await r.read()
            return r.status

    async def change(self, **columns: Any) -> None:
        async with self.server.db.session() as db:
            for name, value in columns.items():
                if name == "allow_downloads":
                    (await db.get(Channel, self.channel_id)).allow_downloads = value
                else:
                    setattr(await db.get(Stream, self.video.id), name, value)
            await db.commit()


@pytest.fixture
async def site(settings_env: dict[str, str]) -> AsyncIterator[Site]:
    async with running_server(settings_env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        users = {"anon": aiohttp.ClientSession()}
        try:
            for name in ("root", "alice", "bob"):  # the first account is the admin
                users[name] = await register(base, name)
            channel_id, _ = await make_channel(server, "alice-tv", "alice")
            now = datetime.now(UTC)
            async with server.db.session() as db:
                row = await queries.start_stream(db, channel_id, now)
                await queries.end_stream(db, row.id, now, StreamStatus.ARCHIVED)
                row.vod_available, row.vod_duration_seconds = True, 2.0
                row.vod_path = f"streams/{row.id}/master.m3u8"
                await db.commit()
            write_recording(server.settings.data_dir / "streams" / str(row.id))
            yield Site(server, base, users, channel_id, row)
        finally:
            for http in users.values():
                await http.close()


async def test_who_may_download(site: Site) -> None:
    everyone = ("root", "alice", "bob", "anon")
    # Downloads off (the default): the owner and the admin only.
    assert [await site.status(w) for w in everyone] == [200, 200, 403, 403]
    await site.change(allow_downloads=True)
    assert [await site.status(w) for w in everyone] == [200, 200, 200, 200]
    # By its public id too, and unlisted videos by it alone.
    assert await site.status("anon", site.video.public_id) == 200
    await site.change(visibility="unlisted")
    assert await site.status("anon", site.video.public_id) == 200
    # ... and by its id, only its owner and admins.
    assert [await site.status(w) for w in everyone] == [200, 200, 404, 404]
    # A private video answers others as if it did not exist, downloads allowed or not.
    await site.change(visibility="private")
    assert [await site.status(w) for w in everyone] == [200, 200, 404, 404]
    assert await site.status("bob", site.video.public_id) == 404
    await site.change(visibility="public", deleted_at=datetime.now(UTC))
    assert [await site.status(w) for w in everyone] == [404, 404, 404, 404]
    for missing in (999999, "A" * 22, "not-a-ref"):
        assert await site.status("alice", missing) == 404


async def test_concurrent_downloads_are_bounded(settings_env: dict[str, str]) -> None:
    env = {
        **settings_env,
        "AETHEX_DOWNLOADS__MAX_CONCURRENT": "2",
        "AETHEX_DOWNLOADS__MAX_PER_ADDRESS": "1",
    }
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        alice = await register(base, "alice")
        try:
            channel_id, _ = await make_channel(server, "alice-tv", "alice")
            now = datetime.now(UTC)
            async with server.db.session() as db:
                row = await queries.start_stream(db, channel_id, now)
                await queries.end_stream(db, row.id, now, StreamStatus.ARCHIVED)
                row.vod_available, row.vod_path = True, f"streams/{row.id}/master.m3u8"
                await db.commit()
            write_recording(server.settings.data_dir / "streams" / str(row.id))
            downloads = server._runner.app[DOWNLOADS_KEY]
            url = f"{base}/videos/{row.id}/download"
            # This client (127.0.0.1) has its one download running: 429, its own cap.
            assert downloads.enter("127.0.0.1") is None
            async with alice.get(url) as r:
                assert r.status == 429 and r.headers["Retry-After"]
                assert (await r.json())["error"]["code"] == "too_many_downloads"
            # Another client takes the last slot: 503, the server's cap.
            assert downloads.enter("192.0.2.7") is None
            async with alice.get(url) as r:
                assert r.status == 503 and r.headers["Retry-After"]
                assert (await r.json())["error"]["code"] == "busy"
            assert server.metrics.sample("aethex_downloads_total", outcome="busy") == 2
            downloads.leave("127.0.0.1")
            downloads.leave("192.0.2.7")
            async with alice.get(f"{base}/videos/{row.id}/download") as r:
                body = await r.read()
                assert r.status == 200 and len(body) == int(r.headers["Content-Length"])
            assert server.metrics.sample("aethex_downloads_total", outcome="completed") == 1
            assert server.metrics.sample("aethex_download_bytes_total") == len(body)
            assert server.metrics.sample("aethex_download_plan_seconds_count") == 1
            assert server.metrics.sample("aethex_downloads_running") == 0
        finally:
            await alice.close()


async def test_the_video_page_offers_the_download_to_those_who_may(site: Site) -> None:
    async def page(who: str) -> str:
        async with site.users[who].get(f"{site.base}/videos/{site.video.id}") as r:
            assert r.status == 200, who
            return await r.text()

    form = f'action="/videos/{site.video.id}/download"'
    assert form in await page("alice") and form in await page("root")
    assert 'id="download-form"' not in await page("bob")
    assert 'id="download-form"' not in await page("anon")
    await site.change(allow_downloads=True)
    assert form in await page("bob") and form in await page("anon")
    # The form's GET (no rendition chosen) is the best rendition's MP4.
    async with site.users["anon"].get(
        f"{site.base}/videos/{site.video.id}/download?rendition="
    ) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "video/mp4"


async def big_video(site: Site, copies: int = 200) -> Path:
    """The site's video made ~33 MB (its segment repeated), more than loopback buffers hold."""
    directory = site.server.settings.data_dir / "streams" / str(site.video.id)
    shutil.rmtree(directory)
    await asyncio.to_thread(write_recording, directory, copies)
    await site.change(allow_downloads=True)
    return directory


async def until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


async def test_a_client_that_leaves_mid_download_frees_its_slot_quietly(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    await big_video(site)
    downloads = site.server._runner.app[DOWNLOADS_KEY]
    reader, writer = await asyncio.open_connection("127.0.0.1", site.server.http_port)
    writer.write(f"GET /videos/{site.video.id}/download HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and downloads.running == 1
    await reader.readexactly(100_000)
    writer.transport.abort()  # gone, with most of the file unsent
    await until(lambda: downloads.running == 0)
    metrics = site.server.metrics
    assert metrics.sample("aethex_downloads_total", outcome="client_left") == 1
    assert metrics.sample("aethex_downloads_total", outcome="completed") is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def test_a_recording_that_vanishes_mid_download_is_cut_short(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    directory = await big_video(site)
    url = f"{site.base}/videos/{site.video.id}/download"
    http = site.users["anon"]
    async with http.head(url) as r:  # plans it; the plan is kept for the GET
        size = int(r.headers["Content-Length"])
    (directory / "108p" / "seg150.m4s").unlink()  # retention, say, between the two
    got = 0
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.get(url) as r:
            assert r.status == 200
            async for block in r.content.iter_chunked(1 << 16):
                got += len(block)
    assert 0 < got < size
    assert any("stopped" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await until(lambda: site.server._runner.app[DOWNLOADS_KEY].running == 0)
    assert site.server.metrics.sample("aethex_downloads_total", outcome="cut") == 1
