"""benchmarks/lib/ws_lean.py, the benchmarks' lean WebSocket client.

The frame reader is sans I/O: a stream of server frames (the server's own ``text_frame`` for
7-, 16- and 64-bit lengths, fragmented messages with control frames between the fragments) is
fed whole, one byte at a time and in random cuts, and must come out the same every time. The
socket is then checked against aiohttp's WebSocket server, the real peer: its masked frames
must read back as sent, a ping is answered with a pong, a close from either side ends both.
"""

from __future__ import annotations

import asyncio
import random
import struct

import pytest
from aiohttp import WSMessage, WSMsgType, web

from benchmarks.lib.ws_lean import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    FrameReader,
    ProtocolError,
    client_frame,
    connect,
)
from webapp.chat.frames import text_frame


def frame(op: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked server frame (any opcode, FIN or not), 7-bit lengths only."""
    assert len(payload) < 126
    return bytes(((0x80 if fin else 0) | op, len(payload))) + payload


SMALL = b'[{"type":"chat:message"}]'
MEDIUM = b"m" * 300  # a 16-bit length
LARGE = bytes(range(256)) * 280  # 71,680 bytes: a 64-bit length
STREAM = (
    text_frame(SMALL)
    + text_frame(MEDIUM)
    + text_frame(LARGE)
    + frame(BINARY, b"ab", fin=False)
    + frame(PING, b"p")  # a control frame between fragments
    + frame(CONTINUATION, b"cd", fin=False)
    + frame(CONTINUATION, b"ef")
    + frame(TEXT, b"", fin=False)
    + frame(CONTINUATION, b"xyz")
    + frame(PONG, b"")
    + frame(CLOSE, struct.pack("!H", 1000) + b"bye")
)
EXPECTED = [
    (TEXT, SMALL),
    (TEXT, MEDIUM),
    (TEXT, LARGE),
    (PING, b"p"),
    (BINARY, b"abcdef"),
    (TEXT, b"xyz"),
    (PONG, b""),
    (CLOSE, b"\x03\xe8bye"),
]


def feed_in(cuts: list[int]) -> list[tuple[int, bytes]]:
    reader = FrameReader()
    out = []
    pos = 0
    for cut in [*cuts, len(STREAM)]:
        out += reader.feed(STREAM[pos:cut])
        pos = cut
    return out


def test_frames_come_out_the_same_however_the_stream_is_cut() -> None:
    assert feed_in([]) == EXPECTED  # several frames in one read
    assert feed_in(list(range(1, len(STREAM)))) == EXPECTED  # one byte per read
    rng = random.Random(16)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 40)))
        assert feed_in(cuts) == EXPECTED
    # The 16- and 64-bit length fields split between reads, right after their first byte.
    medium_at = len(text_frame(SMALL))
    large_at = medium_at + len(text_frame(MEDIUM))
    assert feed_in([medium_at + 2, large_at + 3, large_at + 9]) == EXPECTED


@pytest.mark.parametrize(
    "bad",
    [
        bytes((0x81, 0x82)) + b"\x00\x00\x00\x00ab",  # masked: servers must not mask
        frame(CONTINUATION, b"x"),  # nothing to continue
        frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"),  # a new message inside one
        frame(PING, b"p", fin=False),  # a fragmented control frame
        bytes((0x88, 126)) + struct.pack("!H", 126) + b"c" * 126,  # a control frame over 125
        bytes((0xC1, 1)) + b"x",  # RSV1 (compression) was not negotiated
        frame(0x3, b"x"),  # a reserved opcode
    ],
)
def test_protocol_errors(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        FrameReader().feed(bad)


async def test_socket_against_aiohttps_server() -> None:
    seen: dict[str, object] = {}
    handler_done = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        seen["auth"] = request.headers.get("Authorization")
        if request.query.get("who") == "client-closes":
            async for msg in ws:
                if msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
            seen["client_close"] = ws.close_code
            handler_done.set()
            return ws
        await ws.send_str("hello")
        for _ in range(3):  # the client's frames: 7-, 16- and 64-bit lengths, masked
            msg = await ws.receive()
            await ws.send_bytes(b"echo:" + (msg.data if msg.type == WSMsgType.BINARY else b"?"))
        await ws.ping(b"are you there")
        seen["pong"] = await ws.receive()
        await ws.close(code=4000, message=b"done")  # waits for the client's close
        seen["server_close"] = ws.close_code
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        got: list[tuple[int, bytes]] = []
        sock = await connect(
            f"ws://127.0.0.1:{port}/ws", {"Authorization": "Bearer t"}, lambda *m: got.append(m)
        )
        for payload in (b"a" * 5, b"b" * 300, b"c" * 70_000):
            assert sock.send(client_frame(BINARY, payload))
        assert await asyncio.wait_for(sock.closed, 10) == 4000
        assert got[0] == (TEXT, b"hello")
        assert got[1:] == [(BINARY, b"echo:" + p) for p in (b"a" * 5, b"b" * 300, b"c" * 70_000)]
        pong = seen["pong"]
        assert isinstance(pong, WSMessage)
        assert pong.type == WSMsgType.PONG and pong.data == b"are you there"
        assert seen["auth"] == "Bearer t"
        assert not sock.send(client_frame(TEXT, b"late"))  # closed: nothing more is written

        other = await connect(f"ws://127.0.0.1:{port}/ws?who=client-closes")
        assert await other.close(4001) == 1000  # aiohttp answers a close with 1000
        await asyncio.wait_for(handler_done.wait(), 10)
        assert seen["client_close"] == 4001

        with pytest.raises(ConnectionError, match="404"):
            await connect(f"ws://127.0.0.1:{port}/nowhere")
    finally:
        await runner.cleanup()
