"""The lean HTTP/1.1 front (webapp/fastpath.py) against raw sockets: it answers plain HLS GETs
exactly as aiohttp's routes do, hands everything else to aiohttp mid-connection without losing
a byte, keeps pipelined responses in order, and closes idle and slow-loris connections.

The live edge here is synthetic (parts are opaque bytes to HTTP), so the tests need no encoder.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from tests.conftest import running_server
from transcode.edge import LiveEdge, RenditionEdge
from transcode.hls import LivePlaylist, PartReady, SegmentReady
from webapp.fastpath import parse_head
from webapp.hls import DEADLINE_TICK

if TYPE_CHECKING:
    from mediaserver.app import Server

SLUG = "fast-lane"
# How long a blocking reload on a 10 s segment rendition is held at most (3 target durations).
HELD_FOR = 30.0


# -- parse_head: what the front accepts, and what it leaves to aiohttp ---------------------


def head(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def test_plain_hls_gets_are_parsed() -> None:
    parsed = parse_head(
        head(
            "GET /hls/a/tok/360p/part1.2.m4s?x=1 HTTP/1.1\nHost: h\nRange: bytes=0-9\nUser-Agent: t"
        )
    )
    assert parsed == (
        "GET",
        "/hls/a/tok/360p/part1.2.m4s",
        "x=1",
        {"host": "h", "range": "bytes=0-9", "user-agent": "t"},
        True,
    )
    assert parse_head(head("HEAD /vod/1/master.m3u8 HTTP/1.0\nHost: h"))[4] is False
    assert parse_head(head("GET /vod/1/master.m3u8 HTTP/1.0\nConnection: keep-alive"))[4]
    assert parse_head(head("GET /hls/a/master.m3u8 HTTP/1.1\nConnection: close"))[4] is False


@pytest.mark.parametrize(
    "text",
    [
        "POST /hls/a/master.m3u8 HTTP/1.1\nHost: h",  # another method
        "OPTIONS /hls/a/master.m3u8 HTTP/1.1\nHost: h",  # preflight: aiohttp's route
        "GET / HTTP/1.1\nHost: h",  # another path
        "GET /hlsx/a HTTP/1.1\nHost: h",
        "GET /hls/a/master.m3u8 HTTP/2.0\nHost: h",  # another version
        "GET /hls/a/master.m3u8 HTTP/1.1\nContent-Length: 3",  # a body
        "GET /hls/a/master.m3u8 HTTP/1.1\nTransfer-Encoding: chunked",
        "GET /hls/a/master.m3u8 HTTP/1.1\nUpgrade: websocket",
        "GET /hls/a/master.m3u8 HTTP/1.1\nExpect: 100-continue",
        "GET /hls/%2e%2e/master.m3u8 HTTP/1.1\nHost: h",  # encoded path
        "GET /hls/a/../b/master.m3u8 HTTP/1.1\nHost: h",  # dot segments
        "GET /hls//etc/passwd HTTP/1.1\nHost: h",
        "GET /hls/a\\b/master.m3u8 HTTP/1.1\nHost: h",
        "GET /hls/a/master.m3u8 HTTP/1.1\nHost: h\nHost: i",  # a repeated header
        "GET /hls/a/master.m3u8 HTTP/1.1\nHost: h\n folded",  # obs-fold
        "GET /hls/a/master.m3u8 HTTP/1.1\nBad Name: h",  # not a token
        "GET /hls/a/master.m3u8 HTTP/1.1\nNoColon",
        "GET /hls/a/master.m3u8  HTTP/1.1\nHost: h",  # two spaces
    ],
)
def test_anything_unusual_is_left_to_aiohttp(text: str) -> None:
    assert parse_head(head(text)) is None


def test_bare_line_feeds_and_non_ascii_are_left_to_aiohttp() -> None:
    assert parse_head(b"GET /hls/a/master.m3u8 HTTP/1.1\r\nHost: h\nX: y") is None
    assert parse_head(b"GET /hls/a/master.m3u8 HTTP/1.1\r\nHost: h\rX: y") is None
    assert parse_head("GET /hls/\u00e9/master.m3u8 HTTP/1.1\r\nHost: h".encode()) is None


# -- a server with a synthetic live edge ----------------------------------------------------


def add_part(edge: LiveEdge, msn: int, index: int) -> bytes:
    data = f"part {msn}.{index} ".encode() * 200
    for rendition in edge:
        rendition.add_part(
            PartReady(segment=msn, index=index, data=data, duration=0.5, independent=index == 0)
        )
    edge.notify()
    return data


def add_segment(edge: LiveEdge, msn: int) -> None:
    for rendition in edge:
        data = b"".join(rendition.parts[(msn, i)] for i in range(2))
        rendition.add_segment(
            SegmentReady(
                segment=msn,
                data=data,
                duration=1.0,
                program_date_time=datetime.now(UTC),
                discontinuity=False,
            ),
            edge.window,
        )
    edge.notify()


def put_edge(server: Server) -> LiveEdge:
    """A synthetic live edge for SLUG on the server: one rendition, one segment and a part."""
    edge = LiveEdge(SLUG, 1, 4)
    edge.renditions["360p"] = RenditionEdge(
        name="360p",
        init=b"init-bytes" * 10,
        codecs="avc1.64001e,mp4a.40.2",
        width=640,
        height=360,
        frame_rate=30.0,
        playlist=LivePlaylist(segment_duration=1.0, part_target=0.5, window_segments=4),
        bandwidth=800_000,
        average_bandwidth=700_000,
    )
    server.broadcasts.edges.put(edge)
    add_part(edge, 0, 0)
    add_part(edge, 0, 1)
    add_segment(edge, 0)
    add_part(edge, 1, 0)
    return edge


@pytest.fixture
async def front(settings_env: dict[str, str]) -> AsyncIterator[tuple]:
    env = dict(
        settings_env, AETHEX_HTTP__KEEPALIVE_TIMEOUT="2", AETHEX_HTTP__REQUEST_HEAD_TIMEOUT="1.5"
    )
    async with running_server(env) as server:
        yield server, put_edge(server)


class Raw:
    """A raw HTTP/1.1 connection: send exact bytes, read responses one by one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, source: str = "127.0.0.1") -> Raw:
        """A connection from the loopback address ``source`` (any of 127/8 works)."""
        return cls(*await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)))

    def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)

    async def response(
        self, method: str = "GET", timeout: float = 10.0
    ) -> tuple[int, dict[str, str], bytes]:
        status_line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), timeout)
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = (
            b""
            if method == "HEAD" or status in (204, 304)
            else await self.reader.readexactly(length)
        )
        return status, headers, body

    async def closed(self, timeout: float) -> bool:
        """Whether the server closes the connection within ``timeout`` (what it sends before,
        such as a 408 for a head that took too long, is read and dropped)."""
        try:
            await asyncio.wait_for(self.reader.read(), timeout)
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.writer.close()


def get(path: str, *extra: str) -> str:
    return "".join([f"GET {path} HTTP/1.1\r\nHost: test\r\n", *(e + "\r\n" for e in extra), "\r\n"])


async def media_base(raw: Raw) -> str:
    raw.send(get(f"/hls/{SLUG}/master.m3u8"))
    status, _, body = await raw.response()
    assert status == 200
    uri = next(line for line in body.decode().splitlines() if line and line[0] != "#")
    return f"/hls/{SLUG}/" + uri.split("index.m3u8")[0]


def stable(headers: dict[str, str]) -> dict[str, str]:
    return {
        k: v for k, v in headers.items() if k not in ("date", "server", "keep-alive", "connection")
    }


async def test_fast_and_aiohttp_answers_are_the_same(front: tuple) -> None:
    server, edge = front
    fast = await Raw.open(server.http_port)
    slow = await Raw.open(server.http_port)
    try:
        base = await media_base(fast)
        # Any non-HLS request first hands the connection to aiohttp for good.
        slow.send(get("/api/channels/no-such-channel/live"))
        assert (await slow.response())[0] == 404
        # Only `fast` is still answered by the front; `slow` is passed on to aiohttp.
        assert sorted(c.inner is None for c in server._front.connections) == [False, True]
        paths = [
            base + "index.m3u8",
            base + "index.m3u8?_HLS_msn=1&_HLS_part=0",
            base + "index.m3u8?_HLS_msn=1&_HLS_part=0&_HLS_skip=YES",
            base + "init.mp4",
            base + "part0.1.m4s",
            base + "seg0.m4s",
            base + "seg9.m4s",
            base + "index.m3u8?_HLS_msn=x",
            base + "index.m3u8?_HLS_msn=99",
            f"/hls/{SLUG}/360p/part1.0.m4s",
            f"/hls/{SLUG}/nope/index.m3u8",
            "/vod/12345/master.m3u8",
            f"/hls/{SLUG}/master.m3u8?session=abcdefghijklmnopq",
        ]
        for path in paths:
            for extra in ((), ("Range: bytes=2-9",), ("Origin: https://x.example",)):
                fast.send(get(path, *extra))
                slow.send(get(path, *extra))
                a, b = await fast.response(), await slow.response()
                assert (a[0], stable(a[1]), a[2]) == (b[0], stable(b[1]), b[2]), path
                assert "date" in a[1]
        # HEAD: the headers of the GET and no body, on both.
        for raw in (fast, slow):
            raw.send(f"HEAD {base}part0.1.m4s HTTP/1.1\r\nHost: t\r\n\r\n")
            status, headers, body = await raw.response("HEAD")
            assert status == 200 and int(headers["content-length"]) > 0 and body == b""
            raw.send(get(base + "init.mp4"))  # the next response starts where it should
            assert (await raw.response())[2] == b"init-bytes" * 10
    finally:
        fast.close()
        slow.close()


async def test_pipelined_requests_are_answered_in_order_even_when_one_is_held(front: tuple) -> None:
    server, edge = front
    raw = await Raw.open(server.http_port)
    try:
        base = await media_base(raw)
        # A blocking reload for a part that does not exist yet, then two plain GETs, all sent
        # at once: the GETs wait behind the held request (HTTP/1.1 answers in order).
        raw.send(
            get(base + "index.m3u8?_HLS_msn=1&_HLS_part=1")
            + get(base + "init.mp4")
            + get(base + "part0.0.m4s")
        )
        first = asyncio.ensure_future(raw.response())
        await asyncio.sleep(0.3)
        assert not first.done()
        add_part(edge, 1, 1)
        status, headers, body = await first
        assert status == 200 and b"part1.1.m4s" in body
        assert headers["cache-control"] == "public, max-age=1"
        assert (await raw.response())[2] == b"init-bytes" * 10
        assert (await raw.response())[2] == b"part 0.0 " * 200
    finally:
        raw.close()


async def test_a_page_request_mid_connection_goes_to_aiohttp_without_losing_bytes(
    front: tuple,
) -> None:
    server, _ = front
    raw = await Raw.open(server.http_port)
    try:
        base = await media_base(raw)
        # HLS, then a page, then HLS again, pipelined in one write.
        raw.send(get(base + "init.mp4") + get("/") + get(base + "part0.0.m4s"))
        assert (await raw.response())[2] == b"init-bytes" * 10
        status, headers, page = await raw.response()
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b"AeThex Live" in page
        assert (await raw.response())[2] == b"part 0.0 " * 200
        # A request the front will not parse (a body on a GET) is aiohttp's to answer too.
        raw.send(f"GET {base}init.mp4 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nxy")
        assert (await raw.response())[2] == b"init-bytes" * 10
    finally:
        raw.close()


async def test_held_request_of_a_client_that_leaves_is_dropped(front: tuple) -> None:
    server, edge = front
    raw = await Raw.open(server.http_port)
    base = await media_base(raw)
    raw.send(get(base + "index.m3u8?_HLS_msn=1&_HLS_part=1"))
    await asyncio.sleep(0.2)
    assert sum(len(g.waiters) for g in edge.delivery.groups.values()) == 1
    raw.close()
    await asyncio.sleep(0.2)
    assert sum(len(g.waiters) for g in edge.delivery.groups.values()) == 0
    add_part(edge, 1, 1)  # releasing nobody breaks nothing
    again = await Raw.open(server.http_port)
    try:
        again.send(get(base + "part1.1.m4s"))
        assert (await again.response())[0] == 200
    finally:
        again.close()


@pytest.mark.parametrize("layer", ["fast_path", "aiohttp"])
async def test_a_part_that_comes_as_the_watcher_ticks_releases_the_held_reload(
    settings_env: dict[str, str], layer: str
) -> None:
    """The edge's watcher waits for a notify under a DEADLINE_TICK timeout. On a loaded
    machine the tick and the notify can come due in one loop iteration: the timeout then
    cancels a wait the notify had already ended, and a watcher that checked its groups only
    after a notify left the reload held until its own deadline (HELD_FOR), whichever layer
    holds it. The stall below (the loop not running, as when the process is descheduled)
    makes that iteration certain rather than a few-percent chance under load."""
    async with running_server(settings_env) as server:
        edge = LiveEdge("ticking", 1, 4)
        edge.renditions["360p"] = rendition("360p", 360, segment_duration=10.0)
        server.broadcasts.edges.put(edge)
        add_part(edge, 0, 0)
        raw = await Raw.open(server.http_port)
        try:
            # A body is not for the fast path: "Content-Length: 0" sends it to aiohttp.
            extra = ("Content-Length: 0",) if layer == "aiohttp" else ()
            started = time.monotonic()
            raw.send(get("/hls/ticking/360p/index.m3u8?_HLS_msn=0&_HLS_part=1", *extra))
            deadline = time.monotonic() + HELD_FOR
            while not (edge.delivery and edge.delivery.groups):
                assert time.monotonic() < deadline, "the reload was never held"
                await asyncio.sleep(0.01)
            # The watcher task was scheduled when the request was held, so before this task's
            # next step: after this yield it is waiting, its tick armed.
            await asyncio.sleep(0)
            time.sleep(1.5 * DEADLINE_TICK)  # the loop stalls: the watcher's tick is due
            # The next iteration runs this task's step first, then the due tick's callback:
            # the notify below and the tick's cancel of the watcher's wait land together.
            await asyncio.sleep(0)
            add_part(edge, 0, 1)
            status, _, body = await raw.response(timeout=HELD_FOR)
            assert status == 200 and b"part0.1.m4s" in body
            # Released by the part, not by the request's own deadline.
            assert time.monotonic() - started < HELD_FOR
        finally:
            raw.close()


async def test_connection_close_http10_idle_and_slow_loris(front: tuple) -> None:
    server, _ = front
    port = server.http_port
    raw = await Raw.open(port)
    base = await media_base(raw)
    raw.send(get(base + "init.mp4", "Connection: close"))
    status, headers, _ = await raw.response()
    assert status == 200 and headers["connection"] == "close"
    assert await raw.closed(2)

    raw = await Raw.open(port)
    raw.send(f"GET {base}init.mp4 HTTP/1.0\r\nHost: t\r\n\r\n")
    assert (await raw.response())[0] == 200
    assert await raw.closed(2)

    idle = await Raw.open(port)
    idle.send(get(base + "init.mp4"))
    assert (await idle.response())[0] == 200
    slow = await Raw.open(port)
    slow.send(f"GET {base}init.mp4 HTTP/1.1\r\nHost:")  # and never the rest
    # keepalive_timeout 2 s, request_head_timeout 1.5 s (and the sweeper's 1 s tick).
    assert await slow.closed(4)
    assert await idle.closed(4)


async def test_oversized_head_is_refused_by_aiohttp(front: tuple) -> None:
    server, _ = front
    raw = await Raw.open(server.http_port)
    try:
        raw.send(f"GET /hls/{SLUG}/master.m3u8 HTTP/1.1\r\nX-Big: {'a' * 20000}\r\n\r\n")
        status, _, _ = await raw.response()
        assert status in (400, 431)
    finally:
        raw.close()


async def test_fast_path_can_be_turned_off(settings_env: dict[str, str]) -> None:
    async with running_server(dict(settings_env, AETHEX_HTTP__FAST_PATH="false")) as server:
        assert server._front.service is None  # the front still admits and times heads
        raw = await Raw.open(server.http_port)
        try:
            raw.send(get("/hls/nobody/master.m3u8"))
            status, headers, _ = await raw.response()
            assert status == 404 and headers["cache-control"] == "no-store"
        finally:
            raw.close()


def test_route_shapes_match_aiohttp_routes() -> None:
    from webapp import hls

    source = open(hls.__file__).read()
    routes = set(re.findall(r'add\("(/(?:hls|vod)/[^"]+)"', source))
    assert routes == {
        "/hls/{slug}/{token}/{rendition}/{name}",
        "/hls/{slug}/master.m3u8",
        "/hls/{slug}/watching",
        "/hls/{slug}/{rendition}/{name}",
        "/vod/{stream_id}/master.m3u8",
        "/vod/{stream_id}/{rendition}/{name}",
    }, "a new HLS route needs its shape in HttpFront.route too"


def rendition(name: str, height: int, segment_duration: float = 1.0) -> RenditionEdge:
    return RenditionEdge(
        name=name,
        init=b"init",
        codecs="avc1.64001e",
        width=height * 16 // 9,
        height=height,
        frame_rate=30.0,
        bandwidth=height * 2000,
        average_bandwidth=height * 2000,
        playlist=LivePlaylist(
            segment_duration=segment_duration, part_target=0.5, window_segments=4
        ),
    )


async def test_master_waits_for_every_planned_rendition(settings_env: dict[str, str]) -> None:
    """A player given a partial ladder keeps it for the session: the master waits until the
    transcoder's every planned rendition is on the edge, and after its bound offers the
    renditions that have media rather than nothing (a rung whose encoder failed)."""
    env = dict(settings_env, AETHEX_HLS__SEGMENT_DURATION="1")  # master bound: 3 s
    async with running_server(env) as server:
        edge = LiveEdge("ladder", 1, 4)
        edge.expected = frozenset({"360p", "240p"})
        edge.renditions["360p"] = rendition("360p", 360)
        server.broadcasts.edges.put(edge)
        add_part(edge, 0, 0)
        raw = await Raw.open(server.http_port)
        try:
            raw.send(get("/hls/ladder/master.m3u8"))
            answer = asyncio.ensure_future(raw.response())
            await asyncio.sleep(0.5)
            assert not answer.done()  # 360p has media, but 240p is planned and not there
            edge.renditions["240p"] = rendition("240p", 240)
            edge.notify()
            await asyncio.sleep(0.2)
            assert not answer.done()  # announced, no media yet
            edge.renditions["240p"].add_part(
                PartReady(segment=0, index=0, data=b"p", duration=0.5, independent=True)
            )
            edge.notify()
            status, _, body = await answer
            assert status == 200
            assert "360p/index.m3u8" in body.decode() and "240p/index.m3u8" in body.decode()

            edge.expected = frozenset({"360p", "240p", "1080p"})  # 1080p never comes
            started = time.monotonic()
            raw.send(get("/hls/ladder/master.m3u8"))
            status, _, body = await raw.response()
            assert status == 200 and 2.5 < time.monotonic() - started < 6
            assert "1080p" not in body.decode() and "240p/index.m3u8" in body.decode()
        finally:
            raw.close()


async def test_media_playlists_carry_rendition_reports(settings_env: dict[str, str]) -> None:
    """Each live media playlist reports where the other renditions stand, and a part on one
    rendition changes the others' playlists (their cached text must not go stale)."""
    async with running_server(settings_env) as server:
        edge = LiveEdge("reports", 1, 4)
        edge.renditions["360p"] = rendition("360p", 360)
        edge.renditions["240p"] = rendition("240p", 240)
        server.broadcasts.edges.put(edge)
        add_part(edge, 0, 0)
        add_part(edge, 0, 1)
        raw = await Raw.open(server.http_port)
        try:
            raw.send(get("/hls/reports/360p/index.m3u8"))
            body = (await raw.response())[2].decode()
            assert '#EXT-X-RENDITION-REPORT:URI="../240p/index.m3u8",LAST-MSN=0,LAST-PART=1' in body
            assert "../360p/" not in body  # not itself
            edge.renditions["240p"].add_part(
                PartReady(segment=0, index=2, data=b"p", duration=0.5, independent=False)
            )
            edge.notify()
            raw.send(get("/hls/reports/360p/index.m3u8"))
            body = (await raw.response())[2].decode()
            assert "LAST-MSN=0,LAST-PART=2" in body
        finally:
            raw.close()
