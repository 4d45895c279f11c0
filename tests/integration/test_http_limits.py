"""HTTP connection guards against real sockets (issue 10, points 2 and 8).

Caps at accept: a flood of idle sockets from one loopback address (127.0.0.2) hits that
address's cap and is refused there, counted in aethex_http_rejected_total, while a real HTTP
client on 127.0.0.1 keeps getting the live playlist and the home page. The global cap holds too.

The head deadline: a head sent a byte at a time is cut after http.request_head_timeout on
every request of a connection, whichever layer reads it: the fast path, aiohttp after the
hand-over (a keep-alive second head), a head too big for the fast path, the fast path off.
The bounds asserted are what the code guarantees: never before the head timeout, and long
before the keep-alive timeout that was the only bound before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from tests.conftest import running_server
from tests.integration.test_hls_fastpath import (
    HELD_FOR,
    SLUG,
    Raw,
    add_part,
    get,
    put_edge,
    rendition,
)
from transcode.edge import LiveEdge

FLOOD = "127.0.0.2"
KEEPALIVE = 60.0  # far above every bound below: a close seen earlier is the head deadline's
HEAD_TIMEOUT = 1.0


def rejected(server: object, reason: str) -> float:
    return server.metrics.sample("aethex_http_rejected_total", reason=reason) or 0.0


async def read_to_close(raw: Raw) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed:
    the client may still be writing when the server closes)."""
    try:
        return await raw.reader.read()
    except ConnectionError:
        return b""


async def first_closed(raws: list[Raw], n: int, bound: float = 30.0) -> list[bytes]:
    """What each of the first ``n`` connections the server closes received; the others stay
    open and are left unread."""
    pending = {asyncio.ensure_future(read_to_close(r)) for r in raws}
    done: set[asyncio.Future[bytes]] = set()
    deadline = time.monotonic() + bound
    try:
        while len(done) < n:
            finished, pending = await asyncio.wait(
                pending, timeout=deadline - time.monotonic(), return_when=asyncio.FIRST_COMPLETED
            )
            assert finished, f"only {len(done)} of {n} connections closed in {bound} s"
            done |= finished
    finally:
        for task in pending:
            task.cancel()
    assert len(done) == n, f"{len(done)} connections closed, expected {n}"
    return [t.result() for t in done]


async def until(condition: Callable[[], bool], bound: float = 10.0) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def viewer_is_served(port: int) -> None:
    """A real HTTP client on 127.0.0.1: the live master playlist and the home page."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/hls/{SLUG}/master.m3u8") as resp:
            assert resp.status == 200 and "#EXTM3U" in await resp.text()
        async with http.get(f"http://127.0.0.1:{port}/") as resp:
            assert resp.status == 200 and "AeThex Live" in await resp.text()


# -- caps at accept ---------------------------------------------------------------------------


async def test_one_address_flooding_hits_its_own_cap_and_others_are_served(
    settings_env: dict[str, str],
) -> None:
    cap, extra = 4, 6
    env = dict(
        settings_env,
        AETHEX_HTTP__MAX_CONNECTIONS_PER_ADDRESS=str(cap),
        AETHEX_HTTP__MAX_CONNECTIONS="64",
        AETHEX_HTTP__KEEPALIVE_TIMEOUT=str(KEEPALIVE),
    )
    async with running_server(env) as server:
        put_edge(server)
        port = server.http_port
        flood = [await Raw.open(port, FLOOD) for _ in range(cap + extra)]
        try:
            answers = await first_closed(flood, extra)
            assert all(a.startswith(b"HTTP/1.1 503 ") for a in answers), answers
            assert rejected(server, "too_many_from_address") == extra
            await viewer_is_served(port)
            # The admitted flood sockets still hold the address's share, also once handed
            # over to aiohttp (a page request): one more from that address is refused.
            held = [r for r in flood if not r.reader.at_eof()]
            assert len(held) == cap
            held[0].send(get("/"))
            assert (await held[0].response())[0] == 200
            late = await Raw.open(port, FLOOD)
            assert (await read_to_close(late)).startswith(b"HTTP/1.1 503 ")
            assert rejected(server, "too_many_from_address") == extra + 1
            await viewer_is_served(port)
        finally:
            for raw in flood:
                raw.close()
        # Closed connections give their share back: the address is served again.
        await until(lambda: FLOOD not in server._front.admission.by_address)
        again = await Raw.open(port, FLOOD)
        try:
            again.send(get(f"/hls/{SLUG}/master.m3u8"))
            assert (await again.response())[0] == 200
        finally:
            again.close()


async def test_global_cap_refuses_everyone_once_full(settings_env: dict[str, str]) -> None:
    env = dict(
        settings_env,
        AETHEX_HTTP__MAX_CONNECTIONS_PER_ADDRESS="4",
        AETHEX_HTTP__MAX_CONNECTIONS="6",
        AETHEX_HTTP__KEEPALIVE_TIMEOUT=str(KEEPALIVE),
    )
    async with running_server(env) as server:
        put_edge(server)
        port = server.http_port
        flood = [
            await Raw.open(port, source) for source in ("127.0.0.2", "127.0.0.3") for _ in range(4)
        ]
        try:
            await first_closed(flood, 2)
            assert rejected(server, "too_many_connections") == 2
            assert server.metrics.sample("aethex_http_connections") == 6
            viewer = await Raw.open(port)
            assert (await read_to_close(viewer)).startswith(b"HTTP/1.1 503 ")
        finally:
            for raw in flood:
                raw.close()
        await until(lambda: server._front.admission.total == 0)
        await viewer_is_served(port)


# -- the request head deadline on every request -----------------------------------------------


@pytest.fixture
async def deadline_server(settings_env: dict[str, str]) -> AsyncIterator[object]:
    env = dict(
        settings_env,
        AETHEX_HTTP__REQUEST_HEAD_TIMEOUT=str(HEAD_TIMEOUT),
        AETHEX_HTTP__KEEPALIVE_TIMEOUT=str(KEEPALIVE),
    )
    async with running_server(env) as server:
        put_edge(server)
        yield server


def slow_head(target: str) -> bytes:
    """A head that would take minutes at one byte per step: it never completes in the test."""
    return (f"GET {target} HTTP/1.1\r\nHost: t\r\nX-Slow: " + "s" * 4000 + "\r\n\r\n").encode()


async def dribble(raw: Raw, data: bytes) -> None:
    """Send one byte at a time, each after a pause, until the server closes the connection."""
    try:
        for i in range(len(data)):
            raw.writer.write(data[i : i + 1])
            await raw.writer.drain()
            await asyncio.sleep(0.05)
    except ConnectionError:
        pass


async def assert_cut_by_head_deadline(server: object, raw: Raw, head: bytes) -> None:
    before = rejected(server, "head_timeout")
    started = time.monotonic()
    sender = asyncio.ensure_future(dribble(raw, head))
    try:
        answer = await asyncio.wait_for(read_to_close(raw), KEEPALIVE / 3)
    finally:
        sender.cancel()
        raw.close()
    assert time.monotonic() - started >= HEAD_TIMEOUT
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer
    assert rejected(server, "head_timeout") == before + 1


async def _first_head_on_the_fast_path(raw: Raw) -> bytes:
    return slow_head(f"/hls/{SLUG}/master.m3u8")


async def _second_head_on_the_fast_path(raw: Raw) -> bytes:
    raw.send(get(f"/hls/{SLUG}/master.m3u8"))
    assert (await raw.response())[0] == 200
    return slow_head(f"/hls/{SLUG}/master.m3u8")


async def _second_head_after_hand_over(raw: Raw) -> bytes:
    raw.send(get("/"))  # a page: aiohttp answers it and keeps the connection
    assert (await raw.response())[0] == 200
    return slow_head("/")


async def _head_too_big_for_the_fast_path(raw: Raw) -> bytes:
    # More than http.max_request_head at once (the front hands it to aiohttp), then slowly.
    raw.send(
        f"GET /hls/{SLUG}/master.m3u8 HTTP/1.1\r\nHost: t\r\n"
        + "".join(f"X-Pad-{i}: {'p' * 100}\r\n" for i in range(90))
    )
    return b"X-Slow: " + b"s" * 4000 + b"\r\n\r\n"


@pytest.mark.parametrize(
    "prelude",
    [
        _first_head_on_the_fast_path,
        _second_head_on_the_fast_path,
        _second_head_after_hand_over,
        _head_too_big_for_the_fast_path,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
async def test_slow_head_is_cut_on_every_request(
    deadline_server: object, prelude: Callable[[Raw], Awaitable[bytes]]
) -> None:
    raw = await Raw.open(deadline_server.http_port)
    head = await prelude(raw)
    await assert_cut_by_head_deadline(deadline_server, raw, head)


async def test_slow_head_is_cut_with_the_fast_path_off(settings_env: dict[str, str]) -> None:
    env = dict(
        settings_env,
        AETHEX_HTTP__FAST_PATH="false",
        AETHEX_HTTP__REQUEST_HEAD_TIMEOUT=str(HEAD_TIMEOUT),
        AETHEX_HTTP__KEEPALIVE_TIMEOUT=str(KEEPALIVE),
    )
    async with running_server(env) as server:
        raw = await Raw.open(server.http_port)
        await assert_cut_by_head_deadline(server, raw, slow_head("/"))
        # The next connection's requests, sent whole, are answered.
        raw = await Raw.open(server.http_port)
        try:
            raw.send(get("/"))
            assert (await raw.response())[0] == 200
        finally:
            raw.close()


async def test_idle_keep_alive_and_slow_handlers_are_not_slow_heads(
    deadline_server: object,
) -> None:
    """The deadline is for heads only: a connection idle between requests (aiohttp's
    keep-alive) and a request whose aiohttp handler runs longer than the head timeout (a
    held playlist reload) are both left alone."""
    server = deadline_server
    edge = LiveEdge("held", 1, 4)  # 10 s segments: a reload is held up to HELD_FOR
    edge.renditions["360p"] = rendition("360p", 360, segment_duration=10.0)
    server.broadcasts.edges.put(edge)
    add_part(edge, 0, 0)
    raw = await Raw.open(server.http_port)
    try:
        raw.send(get("/"))
        assert (await raw.response())[0] == 200
        await asyncio.sleep(3 * HEAD_TIMEOUT + 1)  # several sweeps of an idle connection
        # A blocking reload aiohttp answers (a body is not for the front): held until the
        # part exists, which comes only after several sweeps.
        sent = time.monotonic()
        raw.send(
            "GET /hls/held/360p/index.m3u8?_HLS_msn=0&_HLS_part=1 HTTP/1.1\r\n"
            "Host: t\r\nContent-Length: 0\r\n\r\n"
        )
        answer = asyncio.ensure_future(raw.response(timeout=HELD_FOR))
        await asyncio.sleep(3 * HEAD_TIMEOUT + 1)
        assert not answer.done()  # a cut as a slow head answers 408: here, or below
        add_part(edge, 0, 1)
        status, _, body = await answer
        assert status == 200 and b"part0.1.m4s" in body
        # Released by the part: its own deadline would answer it too, but only HELD_FOR after.
        assert time.monotonic() - sent < HELD_FOR
    finally:
        raw.close()
    assert rejected(server, "head_timeout") == 0
