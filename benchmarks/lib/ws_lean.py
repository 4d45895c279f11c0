"""A lean WebSocket client for benchmarks: one asyncio Protocol per socket, frames parsed by hand.

Why not aiohttp's client: a benchmark viewer process holds hundreds of sockets that all receive
the same frame every server tick. Through aiohttp each delivery is a reader coroutine woken by
a queue, a decoded ``str`` and a message object; with 1000 viewers on a 2-core machine the
client processes took more CPU than the server they measured. Here a socket is a Protocol
whose ``data_received`` cuts the bytes into frames (RFC 6455 section 5.2) and hands each
complete message's payload, as ``bytes``, to a callback: no task, no queue, no decoding (the
caller parses a payload once per distinct text; see benchmarks/engagement.py).

What it does and does not do. The opening handshake is written once by hand and its answer
checked (101, ``Sec-WebSocket-Accept``; no extension may be negotiated, so a frame with a
reserved bit set is an error). Server frames must be unmasked; text and binary messages may be
fragmented (continuation frames, with control frames between the fragments); a ping is
answered with a pong carrying the same payload; a close is answered with a close echoing its
status code, and the socket is then closed. Payloads are not checked to be UTF-8 here (the
caller decodes a payload when it parses it). Client frames are masked as the RFC requires;
``client_frame`` builds one, so a sender can build its frequent frames once and write the same
bytes every time (the mask key is then not fresh per frame: fine against our own server in a
benchmark, not for a browser-facing client). Plain ``ws://`` (or ``http://``) only, no TLS.

    sock = await connect("http://127.0.0.1:8080/ws/chat/x", on_message=lambda op, data: ...)
    sock.send(client_frame(TEXT, b'{"type": "chat:send", "content": "hi"}'))
    await sock.close()
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_NO_STATUS = 1005  # a close frame without a status code (RFC 6455 section 7.4.1)
PROTOCOL_ERROR = 1002

OnMessage = Callable[[int, bytes], None]
"""``on_message(opcode, payload)``: a complete text or binary message."""


class ProtocolError(Exception):
    """The server broke RFC 6455 (the socket is closed with status 1002)."""


def _masked(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes, key: bytes | None = None) -> bytes:
    """A final, masked client frame; ``key`` is the 4-byte mask (fresh random bytes if None)."""
    key = os.urandom(4) if key is None else key
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 0x10000:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + key + _masked(payload, key)


class FrameReader:
    """Server frames from a byte stream, sans I/O: ``feed`` takes whatever a read returned (part
    of a frame, several frames) and returns what completed: ``(opcode, payload)`` for each
    whole text/binary message (fragments joined, the opcode of the first) and each control
    frame (ping, pong, close), in the order they completed. Raises ProtocolError."""

    def __init__(self) -> None:
        self._buf = bytearray()  # the start of an incomplete frame
        self._need = 0  # bytes the buffered frame needs before it can be parsed again
        self._frag_op = 0  # opcode of the fragmented message in progress (0: none)
        self._frags: list[bytes] = []

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return []
            data = bytes(self._buf)
            self._buf = bytearray()
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(data)
        while pos < end:
            if end - pos < 2:
                self._need = 2
                break
            b0 = data[pos]
            b1 = data[pos + 1]
            n = b1 & 0x7F
            h = pos + 2
            if n == 126:
                if end - h < 2:
                    self._need = 4
                    break
                n = int.from_bytes(data[h : h + 2], "big")
                h += 2
            elif n == 127:
                if end - h < 8:
                    self._need = 10
                    break
                n = int.from_bytes(data[h : h + 8], "big")
                h += 8
            if b0 & 0x70:
                raise ProtocolError("reserved bits set (no extension was negotiated)")
            if b1 & 0x80:
                raise ProtocolError("masked frame from the server")
            if end - h < n:
                self._need = h - pos + n
                break
            payload = data[h : h + n]
            pos = h + n
            op = b0 & 0x0F
            fin = b0 & 0x80
            if op >= CLOSE:
                if op > PONG:
                    raise ProtocolError(f"unknown control opcode {op:#x}")
                if not fin or n > 125:
                    raise ProtocolError("fragmented or oversized control frame")
                out.append((op, payload))
            elif op == CONTINUATION:
                if not self._frag_op:
                    raise ProtocolError("continuation frame without a message to continue")
                self._frags.append(payload)
                if fin:
                    out.append((self._frag_op, b"".join(self._frags)))
                    self._frag_op = 0
                    self._frags = []
            elif op == TEXT or op == BINARY:
                if self._frag_op:
                    raise ProtocolError("new message inside a fragmented one")
                if fin:
                    out.append((op, payload))
                else:
                    self._frag_op = op
                    self._frags = [payload]
            else:
                raise ProtocolError(f"unknown data opcode {op:#x}")
        if pos < end:
            self._buf += data[pos:]
        return out


class LeanSocket(asyncio.Protocol):
    """One client WebSocket. ``opened`` resolves once the handshake is accepted; ``closed``
    resolves with the close status (1005 if the server's close frame had none, 1006 if the
    connection dropped without a close frame) when the connection is gone."""

    def __init__(self, host: str, path: str, headers: dict[str, str], on_message: OnMessage):
        loop = asyncio.get_running_loop()
        self.on_message = on_message
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int] = loop.create_future()
        self.close_code: int | None = None
        self.error: str | None = None  # a protocol error, or why the handshake failed
        self.transport: asyncio.Transport | None = None
        self._key = base64.b64encode(os.urandom(16))
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {self._key.decode()}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n"
        ).encode()
        self._head = b""  # the handshake answer until its blank line
        self._reader = FrameReader()
        self._close_sent = False

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if not self.opened.done():
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            data = self._head[end + 4 :]
            self._handshake(self._head[:end])
            self._head = b""
            if self.error or not data:
                return
        if self.close_code is not None:
            return  # nothing may follow a close frame
        try:
            got = self._reader.feed(data)
        except ProtocolError as exc:
            self.error = str(exc)
            self._fail(PROTOCOL_ERROR)
            return
        for op, payload in got:
            if op == TEXT or op == BINARY:
                self.on_message(op, payload)
            elif op == PING:
                self.send(client_frame(PONG, payload))
            elif op == CLOSE:
                self._closing(payload)
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(self.error or "closed during handshake"))
        if self.close_code is None:
            self.close_code = 1006
        if not self.closed.done():
            self.closed.set_result(self.close_code)

    # -- sending

    def send(self, frame: bytes) -> bool:
        """Write a ready-made (masked) client frame; False if the socket is closing."""
        t = self.transport
        if t is None or t.is_closing() or self._close_sent:
            return False
        t.write(frame)
        return True

    def send_text(self, text: str | bytes) -> bool:
        data = text.encode() if isinstance(text, str) else text
        return self.send(client_frame(TEXT, data))

    async def close(self, code: int = 1000, timeout: float = 5.0) -> int:
        """Send a close frame and wait (up to ``timeout``) for the server's answer."""
        if self.transport is None:
            return 1006
        self._send_close(code)
        try:
            return await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self.transport.abort()
            return await self.closed

    # -- internals

    def _handshake(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1(self._key + _GUID).digest()).decode()
        if len(parts) < 2 or parts[1] != "101":
            self.error = f"handshake answered {lines[0]!r}"
        elif fields.get("sec-websocket-accept") != accept:
            self.error = "wrong Sec-WebSocket-Accept"
        elif fields.get("sec-websocket-extensions"):
            self.error = f"unexpected extension {fields['sec-websocket-extensions']!r}"
        if self.error:
            self.opened.set_exception(ConnectionError(self.error))
            assert self.transport is not None
            self.transport.close()
        else:
            self.opened.set_result(None)

    def _send_close(self, code: int) -> None:
        if not self._close_sent and self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(CLOSE, code.to_bytes(2, "big")))
        self._close_sent = True

    def _closing(self, payload: bytes) -> None:
        """The server's close frame: echo its status (if we have not sent ours) and hang up
        (both sides have now sent a close, RFC 6455 section 7.1.1 lets the client close)."""
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else _NO_STATUS
        self.close_code = code
        self._send_close(code if len(payload) >= 2 else 1000)
        assert self.transport is not None
        self.transport.close()

    def _fail(self, code: int) -> None:
        self.close_code = code
        self._send_close(code)
        assert self.transport is not None
        self.transport.close()


def _ignore(op: int, payload: bytes) -> None:
    pass


async def connect(
    url: str,
    headers: dict[str, str] | None = None,
    on_message: OnMessage = _ignore,
    timeout: float = 30.0,
) -> LeanSocket:
    """Open a WebSocket to ``url`` (``ws://`` or ``http://``) and finish its handshake."""
    u = urlsplit(url)
    if u.scheme not in ("ws", "http") or not u.hostname:
        raise ValueError(f"only plain ws:// or http:// URLs: {url!r}")
    port = u.port or 80
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    host = u.hostname if port == 80 else f"{u.hostname}:{port}"
    loop = asyncio.get_running_loop()
    _, sock = await asyncio.wait_for(
        loop.create_connection(
            lambda: LeanSocket(host, path, headers or {}, on_message), u.hostname, port
        ),
        timeout,
    )
    try:
        await asyncio.wait_for(asyncio.shield(sock.opened), timeout)
    except BaseException:
        if sock.transport is not None:
            sock.transport.abort()
        raise
    return sock
