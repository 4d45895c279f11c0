"""LL-HLS and VOD over real HTTP: a real ffmpeg publishes, the server transcodes and packages,
an aiohttp client (and raw sockets, for paths a client library would tidy up) plays it.

One publishing stream is shared by the whole module (1 s segments, so three Target Durations
are 3 s); tests that need the stream in a given state (long enough for delta updates,
stalled, ended, archived) bring it there themselves, in file order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import m3u8
import pytest
import pytest_asyncio
from sqlalchemy import select

from storage.models import Stream, StreamStatus
from tests.conftest import make_channel, make_source, push, rtmp_url, running_server

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SLUG = "hls-live"
LADDER = [
    {"name": "360p", "height": 360, "fps": 30, "video_kbps": 800},
    {"name": "240p", "height": 240, "fps": 30, "video_kbps": 300},
]
TOKENED = re.compile(r"^([0-9a-f]{10})/(360p|240p)/index\.m3u8\?session=([A-Za-z0-9_-]{16,})$")
IMMUTABLE = "public, max-age=31536000, immutable"
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"


@dataclasses.dataclass
class Live:
    server: Any
    http: aiohttp.ClientSession
    proc: asyncio.subprocess.Process
    base: str

    @property
    def edge(self) -> Any:
        return self.server.broadcasts.edges.get(SLUG)

    def rendition(self, name: str = "360p") -> Any:
        return self.edge.renditions[name]

    async def master(self, query: str = "") -> tuple[aiohttp.ClientResponse, str]:
        async with self.http.get(f"{self.base}/hls/{SLUG}/master.m3u8{query}") as resp:
            return resp, await resp.text()

    async def media_url(self, rendition: str = "360p") -> str:
        """The tokened media playlist URL the master links, session query included."""
        _, text = await self.master()
        for uri in m3u8.loads(text).playlists:
            if f"/{rendition}/" in uri.uri:
                return f"{self.base}/hls/{SLUG}/{uri.uri}"
        raise AssertionError(f"no {rendition} in {text}")

    async def get(self, url: str, **kw: Any) -> tuple[aiohttp.ClientResponse, bytes]:
        async with self.http.get(url, **kw) as resp:
            return resp, await resp.read()

    async def end(self) -> None:
        """Stop the publisher (as an encoder closing cleanly) and wait for ffmpeg to go."""
        if self.proc.returncode is None:
            with_suppress_lookup(self.proc.send_signal, signal.SIGCONT)
            with_suppress_lookup(self.proc.terminate)
            await asyncio.wait_for(self.proc.wait(), 15)


def with_suppress_lookup(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except ProcessLookupError:
        pass


def strip_query(url: str) -> str:
    return url.split("?", 1)[0]


def object_url(media_url: str, name: str) -> str:
    return strip_query(media_url).rsplit("/", 1)[0] + "/" + name


def hint(text: str) -> tuple[int, int]:
    m = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part(\d+)\.(\d+)\.m4s"', text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


async def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """A request line sent byte for byte: no client-side normalisation of the path."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode("latin-1")
    )
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(data.split(b" ", 2)[1]), data


def decode(init: bytes, data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(init + data), "r") as container:
        return list(container.decode(video=0))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 s of 640x360 H.264 (a keyframe every second) + AAC, pushed with -re -c copy."""
    return make_source(
        tmp_path_factory.mktemp("hls-source") / "src.flv",
        size="640x360",
        seconds=40,
        bitrate="800k",
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory, source: Path) -> AsyncIterator[Live]:
    env = {
        "AETHEX_DATA_DIR": str(tmp_path_factory.mktemp("hls-data")),
        "AETHEX_HTTP_HOST": "127.0.0.1",
        "AETHEX_HTTP_PORT": "0",
        "AETHEX_RTMP_HOST": "127.0.0.1",
        "AETHEX_RTMP_PORT": "0",
        "AETHEX_RTMP__IDLE_TIMEOUT": "20",
        "AETHEX_TRANSCODE__ENABLED": "true",
        "AETHEX_TRANSCODE__PRESET": "ultrafast",
        "AETHEX_TRANSCODE__LADDER": json.dumps(LADDER),
        # 1 s segments: a blocking request is held at most 3 s; a 10-segment window is long
        # enough for delta updates (CAN-SKIP-UNTIL is 6 target durations).
        "AETHEX_HLS__SEGMENT_DURATION": "1",
        "AETHEX_HLS__LIVE_SEGMENTS": "10",
        "AETHEX_HLS__VIEWER_TIMEOUT": "2",
        "AETHEX_HLS__VIEWER_UPDATE_INTERVAL": "0.3",
    }
    env["AETHEX_HLS__RECONNECT_GRACE"] = "0"
    async with running_server(env) as server:
        _, key = await make_channel(server, SLUG, "hana")
        proc = await push(source, rtmp_url(server, key))
        live = Live(server, aiohttp.ClientSession(), proc, f"http://127.0.0.1:{server.http_port}")
        try:
            deadline = time.monotonic() + 30
            while True:  # the master is held until every rendition has media, then 200
                resp, _ = await live.master()
                if resp.status == 200:
                    break
                assert time.monotonic() < deadline, resp.status
                await asyncio.sleep(0.2)
            yield live
        finally:
            await live.http.close()
            await live.end()


async def test_master_links_tokened_media_playlists_with_a_viewer_session(live: Live) -> None:
    resp, text = await live.master()
    assert resp.status == 200
    assert resp.headers["Content-Type"] == PLAYLIST_TYPE
    assert resp.headers["Cache-Control"] == "private, no-cache"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    master = m3u8.loads(text)
    uris = [TOKENED.match(p.uri) for p in master.playlists]
    assert all(uris) and {m.group(2) for m in uris} == {"360p", "240p"}, text
    assert len({m.group(3) for m in uris}) == 1  # one session per player, on every variant
    assert len({m.group(1) for m in uris}) == 1
    # Each master fetch is a new player; a page may pin its session across master reloads.
    _, again = await live.master()
    assert TOKENED.match(m3u8.loads(again).playlists[0].uri).group(3) != uris[0].group(3)
    _, pinned = await live.master("?session=abcdefghijklmnop")
    assert "index.m3u8?session=abcdefghijklmnop" in pinned
    _, junk = await live.master("?session=../../x")
    assert "session=../../x" not in junk

    url = await live.media_url("360p")
    resp, body = await live.get(url)
    assert resp.status == 200 and resp.headers["Content-Type"] == PLAYLIST_TYPE
    assert resp.headers["Cache-Control"] == "no-cache"
    media = m3u8.loads(body.decode())
    assert media.server_control.can_block_reload == "YES"
    assert media.version >= 9 and "#EXT-X-PRELOAD-HINT" in body.decode()
    # The short form without the token serves the same playlist.
    resp, short = await live.get(f"{live.base}/hls/{SLUG}/360p/index.m3u8")
    assert resp.status == 200 and b"#EXT-X-PART-INF" in short


async def test_blocking_reload_is_released_when_the_part_appears(live: Live) -> None:
    url = await live.media_url("360p")
    edge, loop = live.edge, asyncio.get_running_loop()
    for _ in range(5):
        _, body = await live.get(url)
        msn, part = hint(body.decode())
        playlist = live.rendition("360p").playlist
        if not playlist.has_part(msn, part):
            break
    appeared: list[float] = []

    def notify() -> None:  # note the moment the awaited part exists on the edge
        if not appeared and playlist.has_part(msn, part):
            appeared.append(loop.time())
        type(edge).notify(edge)

    edge.notify = notify
    try:
        started = loop.time()
        resp, body = await live.get(f"{url}&_HLS_msn={msn}&_HLS_part={part}")
        done = loop.time()
    finally:
        del edge.notify
    assert resp.status == 200, body
    assert resp.headers["Cache-Control"] == "public, max-age=1"
    assert f'URI="part{msn}.{part}.m4s"' in body.decode()
    assert appeared, "answered before the part existed"
    assert started <= appeared[0] <= done
    assert done - appeared[0] < 0.25, done - appeared[0]
    # A part that already exists is answered at once.
    started = loop.time()
    resp, body = await live.get(f"{url}&_HLS_msn={msn}&_HLS_part={part}")
    assert resp.status == 200 and loop.time() - started < 0.2
    # _HLS_msn alone waits for the whole segment.
    resp, body = await live.get(f"{url}&_HLS_msn={msn}")
    assert resp.status == 200 and f"seg{msn}.m4s" in body.decode()
    hist = live.server.metrics.sample("aethex_hls_blocking_wait_seconds_count")
    assert hist and hist >= 3


async def test_bad_or_far_ahead_directives_get_400(live: Live) -> None:
    url = await live.media_url("240p")
    _, body = await live.get(url)
    msn, part = hint(body.decode())
    before = (
        live.server.metrics.sample(
            "aethex_hls_requests_total", kind="blocking_playlist", status="400"
        )
        or 0
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    for query in (
        f"_HLS_msn={msn + 10}",
        f"_HLS_msn={msn}&_HLS_part={part + 40}",
        f"_HLS_msn={msn}&_HLS_part=abc",
        "_HLS_msn=abc",
        "_HLS_msn=-1",
        "_HLS_msn=1.5",
        "_HLS_msn=%201",
        "_HLS_msn=1&_HLS_msn=2",
        "_HLS_msn=99999999999",
        f"_HLS_msn={msn}&_HLS_skip=NO",
    ):
        resp, body = await live.get(f"{url}&{query}")
        assert resp.status == 400, (query, resp.status, body)
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
    resp, _ = await live.get(f"{url}&_HLS_part=1")  # a part without its segment number
    assert resp.status == 400
    assert loop.time() - started < 1.0  # none of them was held
    after = live.server.metrics.sample(
        "aethex_hls_requests_total", kind="blocking_playlist", status="400"
    )
    assert after - before == 10


async def test_preload_hinted_part_is_held_until_complete(live: Live) -> None:
    url = await live.media_url("360p")
    rendition = live.rendition("360p")
    for _ in range(5):
        _, body = await live.get(url)
        msn, part = hint(body.decode())
        if (msn, part) not in rendition.parts:
            break
    resp, data = await live.get(object_url(url, f"part{msn}.{part}.m4s"))
    assert resp.status == 200
    assert data == rendition.parts[(msn, part)]
    assert resp.headers["Content-Type"] == "video/mp4"
    assert resp.headers["Cache-Control"] == IMMUTABLE
    _, init = await live.get(object_url(url, "init.mp4"))
    with av.open(io.BytesIO(init + data), "r") as container:
        assert sum(1 for p in container.demux(video=0) if p.size) >= 1
    # Revalidation by ETag.
    resp, _ = await live.get(
        object_url(url, f"part{msn}.{part}.m4s"), headers={"If-None-Match": resp.headers["ETag"]}
    )
    assert resp.status == 304


async def test_unknown_and_far_ahead_names_are_404_at_once(live: Live) -> None:
    url = await live.media_url("360p")
    _, body = await live.get(url)
    msn, _ = hint(body.decode())
    token = strip_query(url).split("/")[-3]
    loop = asyncio.get_running_loop()
    started = loop.time()
    for path in (
        f"{token}/360p/part{msn + 3}.0.m4s",  # beyond what may be awaited
        f"{token}/360p/part{msn - 1}.99.m4s",  # a complete segment has no such part
        f"{token}/360p/seg{msn + 1}.m4s",  # segments are never awaited
        f"{token}/360p/seg00.m4s",
        f"{token}/360p/init7.mp4",
        f"{token}/360p/index.m3u9",
        f"{token}/360p/passwd",
        f"{token}/1080p/index.m3u8",
        f"{token}/1080p/init.mp4",
        "0000000000/360p/index.m3u8",
        "1080p/seg0.m4s",
        "360p/seg99999999.m4s",
    ):
        resp, _ = await live.get(f"{live.base}/hls/{SLUG}/{path}")
        assert resp.status == 404, path
        assert resp.headers["Cache-Control"] == "no-store"
    resp, _ = await live.get(f"{live.base}/hls/nobody-here/master.m3u8")
    assert resp.status == 404
    resp, _ = await live.get(f"{live.base}/hls/nobody-here/360p/index.m3u8")
    assert resp.status == 404
    assert loop.time() - started < 1.0


async def test_cache_headers_types_and_cors(live: Live) -> None:
    url = await live.media_url("360p")
    segments = live.rendition("360p").segments
    await wait_until(lambda: len(segments) >= 1, 10)
    msn = max(segments)
    for name in ("init.mp4", f"seg{msn}.m4s"):
        resp, data = await live.get(object_url(url, name), headers={"Origin": "https://x.test"})
        assert resp.status == 200 and len(data) > 0
        assert resp.headers["Cache-Control"] == IMMUTABLE
        assert resp.headers["Content-Type"] == "video/mp4"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert resp.headers["ETag"]
        # The short form names the same bytes but may name others in the next broadcast.
        resp, short = await live.get(f"{live.base}/hls/{SLUG}/360p/{name}")
        assert short == data and resp.headers["Cache-Control"] == "no-cache"
    assert data == segments[msn]
    for target in (url, object_url(url, f"seg{msn}.m4s"), f"{live.base}/vod/1/master.m3u8"):
        async with live.http.options(
            target,
            headers={
                "Origin": "https://player.test",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "range",
            },
        ) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert "GET" in resp.headers["Access-Control-Allow-Methods"]
            assert resp.headers["Access-Control-Allow-Headers"] == "range"
    assert (
        live.server.metrics.sample("aethex_hls_requests_total", kind="preflight", status="204") == 3
    )


async def test_range_and_head_requests(live: Live) -> None:
    url = await live.media_url("240p")
    segments = live.rendition("240p").segments
    await wait_until(lambda: len(segments) >= 1, 10)
    msn = max(segments)
    data = segments[msn]
    size = len(data)
    seg_url = object_url(url, f"seg{msn}.m4s")
    for header, status, expected, content_range in (
        ("bytes=0-99", 206, data[:100], f"bytes 0-99/{size}"),
        ("bytes=100-", 206, data[100:], f"bytes 100-{size - 1}/{size}"),
        ("bytes=-50", 206, data[-50:], f"bytes {size - 50}-{size - 1}/{size}"),
        (f"bytes=10-{size + 500}", 206, data[10:], f"bytes 10-{size - 1}/{size}"),
        (f"bytes={size}-", 416, b"", f"bytes */{size}"),
        ("bytes=0-1,5-6", 200, data, None),  # several ranges: the whole object
        ("pages=1-2", 200, data, None),
    ):
        resp, body = await live.get(seg_url, headers={"Range": header})
        assert resp.status == status, header
        assert body == expected, header
        assert resp.headers.get("Content-Range") == content_range, header
    async with live.http.head(seg_url) as resp:
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) == size
        assert await resp.read() == b""
    async with live.http.head(url) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == PLAYLIST_TYPE


TRAVERSALS = (
    "/hls/{slug}/360p/../../../../etc/passwd",
    "/hls/{slug}/360p/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/hls/{slug}/360p/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/hls/{slug}/%2e%2e/%2e%2e/etc/passwd",
    "/hls/{slug}/360p/%2Fetc%2Fpasswd",
    "/hls/{slug}/360p//etc/passwd",
    "/hls/{slug}/360p/..\\..\\..\\etc\\passwd",
    "/hls/{slug}/360p/..%5c..%5cetc%5cpasswd",
    "/hls/{slug}/360p/init.mp4%00.txt",
    "/hls/..%2f..%2fetc/360p/index.m3u8",
    "/hls/%2e%2e/master.m3u8",
)


async def test_traversal_attempts_are_404(live: Live) -> None:
    for target in TRAVERSALS:
        status, raw = await raw_get(live.server.http_port, target.format(slug=SLUG))
        assert status == 404, (target, raw[:200])
        assert b"root:" not in raw


async def test_viewers_are_counted_per_session_and_expire(live: Live) -> None:
    server = live.server

    def gauge() -> float | None:
        return server.metrics.sample("aethex_viewers", channel=SLUG)

    async def row() -> Stream:
        async with server.db.session() as db:
            return await db.get(Stream, live.edge.stream_id)

    await wait_until(lambda: gauge() == 0, 6)  # earlier tests' players have gone
    peak = max((await row()).peak_viewers, 3)  # earlier tests' players count in the peak
    a360, a240 = await live.media_url("360p"), await live.media_url("240p")
    a240 = a240.replace(a240.split("session=")[1], a360.split("session=")[1])
    b360 = await live.media_url("360p")
    assert a360.split("session=")[1] != b360.split("session=")[1]
    loop = asyncio.get_running_loop()
    end = loop.time() + 1.2
    while loop.time() < end:  # player A switches renditions; B stays; both poll
        for u in (a360, a240, b360):
            resp, body = await live.get(u)
            assert resp.status == 200
        # Players fetch media too: a session counts only once its address does.
        whole = [seg.uri for seg in m3u8.loads(body.decode()).segments if seg.uri]
        resp, _ = await live.get(object_url(b360, whole[-1]))
        assert resp.status == 200
        await asyncio.sleep(0.1)
    await wait_until(lambda: gauge() == 2, 2)
    # A player without a session (another User-Agent at the same address) is a third.
    resp, _ = await live.get(
        f"{live.base}/hls/{SLUG}/360p/index.m3u8", headers={"User-Agent": "SomePlayer/1.0"}
    )
    assert resp.status == 200
    await wait_until(lambda: gauge() == 3, 2)
    deadline = time.monotonic() + 3
    while (r := await row()).viewer_count != 3:
        assert time.monotonic() < deadline, (r.viewer_count, r.peak_viewers)
        await asyncio.sleep(0.1)
    assert r.peak_viewers == peak
    # Nobody polls any more: after the viewer timeout (2 s) they are gone, the peak stays.
    await wait_until(lambda: gauge() == 0, 4)
    deadline = time.monotonic() + 2
    while (r := await row()).viewer_count != 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert r.peak_viewers == peak


async def test_delta_playlist_skips_old_segments(live: Live) -> None:
    url = await live.media_url("360p")
    playlist = live.rendition("360p").playlist
    await wait_until(lambda: playlist._skipped_count() >= 1, 20, 0.1)
    _, full = await live.get(url)
    full_text = full.decode()
    assert "#EXT-X-SKIP" not in full_text
    assert "CAN-SKIP-UNTIL=6.0" in full_text
    for skip in ("YES", "v2"):
        resp, delta = await live.get(f"{url}&_HLS_skip={skip}")
        text = delta.decode()
        assert resp.status == 200
        m = re.search(r"#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)", text)
        assert m and int(m.group(1)) >= 1, text
        assert text.count("#EXTINF") + int(m.group(1)) >= full_text.count("#EXTINF")
    msn, part = hint(full_text)
    resp, delta = await live.get(f"{url}&_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES")
    assert resp.status == 200
    assert "#EXT-X-SKIP" in delta.decode() and f"part{msn}.{part}.m4s" in delta.decode()


async def test_stalled_stream_answers_503_after_three_target_durations(live: Live) -> None:
    url = await live.media_url("360p")
    playlist = live.rendition("360p").playlist
    live.proc.send_signal(signal.SIGSTOP)  # the encoder hangs; the connection stays up
    try:
        last, still = playlist.last_msn_part(), time.monotonic()
        deadline = still + 8
        while time.monotonic() - still < 0.8:  # wait for what was in flight to drain
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
            if playlist.last_msn_part() != last:
                last, still = playlist.last_msn_part(), time.monotonic()
        msn, part = playlist.next_part()
        loop = asyncio.get_running_loop()
        started = loop.time()
        (r1, b1), (r2, _) = await asyncio.gather(
            live.get(f"{url}&_HLS_msn={msn}&_HLS_part={part}"),
            live.get(object_url(url, f"part{msn}.{part}.m4s")),
        )
        took = loop.time() - started
    finally:
        live.proc.send_signal(signal.SIGCONT)
    assert r1.status == 503 and r2.status == 503, (r1.status, r2.status, b1)
    assert r1.headers["Cache-Control"] == "no-store"
    assert 2.9 <= took < 4.0, took  # Target Duration is 1 s
    # Once media flows again the same request succeeds.
    resp, _ = await live.get(f"{url}&_HLS_msn={msn}&_HLS_part={part}")
    assert resp.status == 200


async def test_ended_stream_answers_at_once_with_endlist(live: Live) -> None:
    url = await live.media_url("360p")
    await live.end()
    playlist = live.rendition("360p").playlist
    await wait_until(lambda: playlist.ended, 30)
    msn, part = playlist.next_part()
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp, body = await live.get(f"{url}&_HLS_msn={msn + 1}&_HLS_part=0")
    assert resp.status == 200
    assert "#EXT-X-ENDLIST" in body.decode() and "#EXT-X-PRELOAD-HINT" not in body.decode()
    resp, _ = await live.get(object_url(url, f"part{msn}.{part}.m4s"))
    assert resp.status == 404
    assert loop.time() - started < 0.5
    resp, _ = await live.master()
    assert resp.status == 200
    # Players still polling an ended stream do not bring its row's viewer count back.
    for _ in range(5):
        await live.get(url)
        await asyncio.sleep(0.15)
    async with live.server.db.session() as db:
        row = await db.get(Stream, live.edge.stream_id)
    assert row.status is not StreamStatus.LIVE and row.viewer_count == 0


async def test_vod_plays_over_http_after_archive(live: Live) -> None:
    await live.end()
    server = live.server
    deadline = time.monotonic() + 60
    while True:
        async with server.db.session() as db:
            row = (await db.execute(select(Stream).order_by(Stream.id.desc()))).scalars().first()
        if row is not None and row.status is StreamStatus.ARCHIVED:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    base = f"{live.base}/vod/{row.id}"
    resp, body = await live.get(f"{base}/master.m3u8")
    assert resp.status == 200 and resp.headers["Content-Type"] == PLAYLIST_TYPE
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    master = m3u8.loads(body.decode())
    assert sorted(p.uri for p in master.playlists) == ["240p/index.m3u8", "360p/index.m3u8"]
    for variant in master.playlists:
        resp, body = await live.get(f"{base}/{variant.uri}")
        assert resp.status == 200
        media = m3u8.loads(body.decode())
        assert media.is_endlist and media.playlist_type == "vod"
        rendition = variant.uri.split("/")[0]
        inits = {}
        for seg_map in media.segment_map:
            resp, inits[seg_map.uri] = await live.get(f"{base}/{rendition}/{seg_map.uri}")
            assert resp.status == 200 and resp.headers["Cache-Control"] == IMMUTABLE
        init = inits[media.segment_map[0].uri]
        total = 0.0
        frames = 0
        for seg in media.segments:
            resp, data = await live.get(f"{base}/{rendition}/{seg.uri}")
            assert resp.status == 200, seg.uri
            assert resp.headers["Cache-Control"] == IMMUTABLE
            assert resp.headers["Content-Type"] == "video/mp4"
            decoded = decode(
                inits.get(seg.init_section.uri, init) if seg.init_section else init, data
            )
            assert decoded and decoded[0].key_frame
            assert decoded[0].height == variant.stream_info.resolution[1]
            frames += len(decoded)
            total += seg.duration
        assert abs(total - row.vod_duration_seconds) < 0.5
        assert frames >= 25 * total

    # Range, HEAD and revalidation on files from disk behave like the live objects.
    seg_url = (
        f"{base}/360p/{media.segments[0].uri}"
        if rendition == "360p"
        else f"{base}/240p/{media.segments[0].uri}"
    )
    _, whole = await live.get(seg_url)
    resp, part = await live.get(seg_url, headers={"Range": "bytes=8-15"})
    assert resp.status == 206 and part == whole[8:16]
    assert resp.headers["Content-Range"] == f"bytes 8-15/{len(whole)}"
    resp, _ = await live.get(seg_url, headers={"Range": f"bytes={len(whole)}-"})
    assert resp.status == 416 and resp.headers["Content-Range"] == f"bytes */{len(whole)}"
    async with live.http.head(seg_url) as head:
        assert head.status == 200 and int(head.headers["Content-Length"]) == len(whole)
    resp, _ = await live.get(seg_url, headers={"If-None-Match": resp.headers["ETag"]})
    assert resp.status == 304

    # Only names the VOD's playlists list are served, even if a file of that name exists.
    stray = server.settings.data_dir / "streams" / str(row.id) / "360p" / "seg99999.m4s"
    stray.write_bytes(b"not listed")
    for path in (
        f"/vod/{row.id}/360p/seg99999.m4s",
        f"/vod/{row.id}/1080p/index.m3u8",
        f"/vod/{row.id}/360p/index.m3u8.tmp",
        "/vod/999999/master.m3u8",
        "/vod/0/master.m3u8",
        "/vod/abc/master.m3u8",
        "/vod/01/master.m3u8",
        f"/vod/{row.id}/360p/../../../aethex.db",
        f"/vod/{row.id}/360p/..%2f..%2f..%2faethex.db",
        f"/vod/{row.id}/%2e%2e/master.m3u8",
        f"/vod/{row.id}/360p/%2e%2e%2fmaster.m3u8",
        f"/vod/{row.id}/360p/..%5c..%5caethex.db",
        f"/vod/{row.id}/360p//etc/passwd",
        f"/vod/{row.id}/360p/%2Fetc%2Fpasswd",
        f"/vod/{row.id}/360p/seg0.m4s%00",
        f"/vod/..%2f{row.id}/master.m3u8",
    ):
        status, raw = await raw_get(server.http_port, path)
        assert status == 404, (path, raw[:200])
        assert b"not listed" not in raw and b"SQLite" not in raw
    assert server.metrics.sample("aethex_hls_requests_total", kind="vod_segment", status="200") >= 4


async def test_cors_origins_setting_limits_who_may_load(settings_env: dict[str, str]) -> None:
    env = {**settings_env, "AETHEX_HTTP__CORS_ORIGINS": "https://a.test, https://b.test"}
    async with running_server(env) as server, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.http_port}"
        for origin, allowed in (("https://b.test", True), ("https://evil.test", False)):
            async with http.get(
                f"{base}/hls/nobody/master.m3u8", headers={"Origin": origin}
            ) as resp:
                assert resp.status == 404
                assert resp.headers.get("Access-Control-Allow-Origin") == (
                    origin if allowed else None
                )
                assert "Origin" in resp.headers.getall("Vary")
            async with http.options(
                f"{base}/vod/1/360p/seg0.m4s",
                headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
            ) as resp:
                assert resp.status == 204
                assert resp.headers.get("Access-Control-Allow-Origin") == (
                    origin if allowed else None
                )
        async with http.post(f"{base}/hls/nobody/master.m3u8") as resp:
            assert resp.status == 405
