"""TLS under an RTMP session, done in memory (``ssl.MemoryBIO``) rather than by the loop.

Why not ``create_server(ssl=...)``: there the protocol only exists once the TLS handshake has
finished, so a socket that never sends a ClientHello is invisible to the per-address caps and
to the sweeper's deadlines. Here the RTMP session is made at TCP accept, exactly as on the plain
port: it is counted against ``rtmp.max_connections(_per_address)`` at once, and since its RTMP
handshake cannot start before the TLS one ends, ``rtmp.handshake_timeout`` bounds both. The
context is taken at accept, so a reloaded certificate applies to new connections only.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

# Plaintext taken from the TLS layer per read: a few records at once.
_READ_SIZE = 1 << 16


class TlsServerProtocol(asyncio.Protocol):
    """Decrypts what the socket brings for ``app`` and encrypts what ``app`` writes.

    ``on_error`` is told why TLS failed (a bad ClientHello, a corrupt record) and is expected
    to close the connection; nothing is raised into the loop, so no traceback is logged.
    """

    def __init__(
        self,
        app: asyncio.Protocol,
        context: ssl.SSLContext,
        on_error: Callable[[str], None],
    ) -> None:
        self.app = app
        self.context = context
        self.on_error = on_error
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.raw: asyncio.Transport | None = None
        self.handshaken = False
        self.failed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.app.connection_made(TlsTransport(self))

    def data_received(self, data: bytes) -> None:
        raw = self.raw
        if self.failed or raw is None or raw.is_closing():
            return
        self.incoming.write(data)
        tls = self.tls
        try:
            if not self.handshaken:
                try:
                    tls.do_handshake()
                except ssl.SSLWantReadError:
                    return
                finally:
                    self.flush()
                self.handshaken = True
            while not raw.is_closing():
                try:
                    chunk = tls.read(_READ_SIZE)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:  # the client's close_notify
                    raw.close()
                    break
                if not chunk:
                    break
                self.app.data_received(chunk)
        except ssl.SSLError as exc:
            self.failed = True
            stage = "handshake" if not self.handshaken else "record"
            self.on_error(f"TLS {stage} failed: {exc.reason or exc.__class__.__name__}")
            return
        self.flush()

    def eof_received(self) -> bool | None:
        return self.app.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.connection_lost(exc)

    def pause_writing(self) -> None:
        self.app.pause_writing()

    def resume_writing(self) -> None:
        self.app.resume_writing()

    def flush(self) -> None:
        """Send what the TLS layer has produced (handshake messages, records, alerts)."""
        out = self.outgoing.read()
        if out and self.raw is not None and not self.raw.is_closing():
            self.raw.write(out)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.handshaken or self.failed:
            return  # nothing of RTMP can be owed before the handshake
        try:
            self.tls.write(data)
        except ssl.SSLError as exc:
            self.failed = True
            self.on_error(f"TLS write failed: {exc.reason or exc.__class__.__name__}")
            return
        self.flush()

    def close(self) -> None:
        if self.handshaken and not self.failed:
            try:
                self.tls.unwrap()  # queues our close_notify; the peer's never comes first
            except ssl.SSLError:
                pass
            self.flush()
        if self.raw is not None:
            self.raw.close()


class TlsTransport(asyncio.Transport):
    """What the RTMP session sees as its transport: plaintext in and out, the rest (buffer
    sizes, reading pauses, closing, the socket) is the TCP transport's."""

    def __init__(self, protocol: TlsServerProtocol) -> None:
        super().__init__()
        self._tls = protocol

    def _raw(self) -> asyncio.Transport:
        assert self._tls.raw is not None
        return self._tls.raw

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tls.write(data)

    def get_write_buffer_size(self) -> int:
        return self._raw().get_write_buffer_size() + self._tls.outgoing.pending

    def is_closing(self) -> bool:
        return self._raw().is_closing()

    def close(self) -> None:
        self._tls.close()

    def abort(self) -> None:
        self._raw().abort()

    def pause_reading(self) -> None:
        self._raw().pause_reading()

    def resume_reading(self) -> None:
        self._raw().resume_reading()

    def is_reading(self) -> bool:
        return self._raw().is_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._tls.tls
        if name == "sslcontext":
            return self._tls.context
        if name == "peercert":
            return self._tls.tls.getpeercert() if self._tls.handshaken else default
        return self._raw().get_extra_info(name, default)
