"""asyncio glue around the sans-I/O RTMP client: one publishing connection to a destination.

:class:`RtmpPublisher` is an ``asyncio.Protocol``, like ingest's sessions and for the same
reason: the send path is hot (every frame of a live stream, per destination), and a protocol
hands frames to the transport without a stream writer's extra buffering or a per-write
coroutine. It does only what the core cannot: open the socket (TLS for ``rtmps://``, with
certificate verification on unless the caller passes its own context), run the core's one
timer, and pace the output.

Pacing, and why it drops: the transport holds at most ``write_buffer`` bytes; while it is over
that, output waits in the core, which refuses media past ``max_buffered``. A refused video frame
means everything up to the next keyframe is dropped too (a decoder cannot use P-frames whose
reference is missing); refused audio frames are dropped alone. Each loss is counted
(:attr:`RtmpPublisher.dropped`). A destination that stops reading altogether (accepts TCP, then
blackholes) keeps the transport paused; after ``stall_timeout`` seconds without progress the
publisher gives up with :class:`PublishError`, so the caller's retry policy takes over and
nothing upstream ever waits for a destination.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from mediaserver.live import CodecConfig, MediaKind, MediaPacket
from mediaserver.rtmp import (
    ClientConnection,
    ConnectAccepted,
    Limits,
    ProtocolError,
    PublishStarted,
    PublishStopped,
    PublishTarget,
    RequestRejected,
    SetupTimedOut,
    StatusReceived,
)
from mediaserver.rtmp.client_events import ClientEvent

log = logging.getLogger(__name__)


class PublishError(Exception):
    """Publishing to a destination failed or stopped; the message never contains the key.

    ``stage`` says where: "connect" (TCP/TLS), "handshake", "connect", "createStream",
    "publish" (setup steps the server refused or did not answer), "publishing" (after the
    start: the server ended it, the socket closed, or the destination stalled).
    """

    def __init__(self, stage: str, message: str, code: str = "") -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.code = code


def client_ssl_context(cafile: str | None = None) -> ssl.SSLContext:
    """Certificate and host name verification on; ``cafile`` adds a CA to trust (a self-
    signed test destination), it never turns verification off."""
    context = ssl.create_default_context()
    if cafile is not None:
        context.load_verify_locations(cafile=cafile)
    return context


class RtmpPublisher(asyncio.Protocol):
    """One publishing connection. Create with :meth:`open`."""

    def __init__(
        self,
        conn: ClientConnection,
        *,
        write_buffer: int,
        stall_timeout: float,
    ) -> None:
        self.conn = conn
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._write_buffer = write_buffer
        self._stall_timeout = stall_timeout
        self._paused_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._started: asyncio.Future[None] = self.loop.create_future()
        self._closed: asyncio.Future[PublishError | None] = self.loop.create_future()
        self._lost: asyncio.Future[None] = self.loop.create_future()
        self._skip_video = False  # dropping video until the next keyframe
        # Corked: send_* queue in the core and only flush() writes. A relay sends a batch of
        # frames per wake-up with one write (one syscall) instead of one write per frame.
        self.corked = False
        self.dropped = 0
        self.server_info: dict[str, Any] = {}
        self.statuses: deque[StatusReceived] = deque(maxlen=16)

    # -- opening --------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        target: PublishTarget,
        *,
        address: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 10.0,
        setup_timeout: float = 10.0,
        stall_timeout: float = 10.0,
        limits: Limits = Limits(),
        max_buffered: int = 4 << 20,
        write_buffer: int = 256 * 1024,
        fourcc_list: Sequence[str] | None = None,
    ) -> RtmpPublisher:
        """Connect, run the handshake and the publish setup; return once media may be sent.

        Raises :class:`PublishError` for every way this can fail (refused, unreachable, TLS,
        rejected key, timeouts, a server that breaks the protocol). ``address``: connect there
        instead of resolving the target's host again (the certificate is still checked
        against the host's name).
        """
        loop = asyncio.get_running_loop()
        if target.tls and ssl_context is None:
            ssl_context = client_ssl_context()
        conn = ClientConnection(
            target,
            limits,
            now=loop.time(),
            setup_timeout=setup_timeout,
            max_buffered=max_buffered,
            fourcc_list=fourcc_list,
        )
        publisher = cls(conn, write_buffer=write_buffer, stall_timeout=stall_timeout)
        try:
            async with asyncio.timeout(connect_timeout):
                await loop.create_connection(
                    lambda: publisher,
                    address or target.host,
                    target.port,
                    ssl=ssl_context if target.tls else None,
                    server_hostname=target.host if target.tls else None,
                )
        except TimeoutError:
            raise PublishError("connect", f"no connection within {connect_timeout} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise PublishError("connect", f"{type(exc).__name__}: {exc}") from None
        try:
            await asyncio.shield(publisher._started)
        except asyncio.CancelledError:
            publisher.abort()
            raise
        return publisher

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        transport.set_write_buffer_limits(high=self._write_buffer)  # type: ignore[attr-defined]
        self._flush()
        self._schedule()

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn.closed:
            return
        try:
            events = conn.receive_data(data, self.loop.time())
        except ProtocolError as exc:
            self._fail(PublishError(self._stage(), f"protocol error: {exc}"))
            return
        if events:
            self._on_events(events)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self._lost.done():
            self._lost.set_result(None)
        if self._timer is not None:
            self._timer.cancel()
        why = f"connection lost: {exc}" if exc else "the server closed the connection"
        self._fail(PublishError(self._stage(), why))
        self.conn.close()

    def pause_writing(self) -> None:
        self._paused_at = self.loop.time()
        self._schedule()

    def resume_writing(self) -> None:
        self._paused_at = None
        self._flush()
        self._schedule()

    # -- events and timers ----------------------------------------------------------------
    def _stage(self) -> str:
        return "publishing" if self._started.done() else self.conn.state.value

    def _on_events(self, events: list[ClientEvent]) -> None:
        for event in events:
            if isinstance(event, PublishStarted):
                if not self._started.done():
                    self._started.set_result(None)
                self._schedule()
            elif isinstance(event, RequestRejected):
                reason = f"refused ({event.code or 'no code'}): {event.description}"
                self._fail(PublishError(event.stage, reason, event.code))
            elif isinstance(event, PublishStopped):
                reason = f"stopped by the server ({event.code}): {event.description}"
                self._fail(PublishError("publishing", reason, event.code))
            elif isinstance(event, SetupTimedOut):
                self._fail(PublishError(event.stage, "no answer from the server in time"))
            elif isinstance(event, StatusReceived):
                self.statuses.append(event)
            elif isinstance(event, ConnectAccepted):
                self.server_info = {**event.properties, **event.info}

    def _schedule(self) -> None:
        """Arm the one timer for the earliest of the core's deadline and the stall limit."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.conn.get_timer()
        if self._paused_at is not None:
            stall = self._paused_at + self._stall_timeout
            when = stall if when is None else min(when, stall)
        if when is not None and not self._closed.done():
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.loop.time()
        events = self.conn.handle_timer(now)
        if events:
            self._on_events(events)
        elif self._paused_at is not None and now >= self._paused_at + self._stall_timeout:
            stalled = f"the destination read nothing for {self._stall_timeout} s"
            self._fail(PublishError(self._stage(), stalled))
        self._schedule()

    def _fail(self, error: PublishError) -> None:
        """End the connection with ``error`` (the first reason wins)."""
        if not self._started.done():
            self._started.set_exception(error)
            # Marks it retrieved: open() re-raises it when it awaits, and when open() was
            # cancelled nobody will, which asyncio would otherwise log as an unseen error.
            self._started.exception()
        if not self._closed.done():
            self._closed.set_result(error)
            log.info("restream %s: %s", self.conn.target.redacted, error)
        self.abort()

    # -- sending --------------------------------------------------------------------------
    def _flush(self) -> None:
        transport = self.transport
        if transport is None or self._paused_at is not None or transport.is_closing():
            return
        pieces = self.conn.pieces_to_send()
        if len(pieces) == 1:
            transport.write(pieces[0])
        elif pieces:
            transport.writelines(pieces)  # the frames as the chunker made them: no join

    def _sent(self) -> None:
        # A corked batch still goes out once it fills the write buffer's worth, so a backlog
        # never sits in the core long enough to reach max_buffered.
        if not self.corked or self.conn.buffered >= self._write_buffer:
            self._flush()

    def flush(self) -> None:
        """Write what the core has queued (for a corked publisher, after a batch)."""
        self._flush()

    def send_video(self, codec: str, dts: int, pts: int, keyframe: bool, data: bytes) -> bool:
        """Queue a frame; False when it (and the video up to the next keyframe) is dropped.

        Timestamps are milliseconds from 0 up (a source that starts below zero is shifted by
        the caller); a negative one raises ValueError.
        """
        if self._skip_video and not keyframe:
            self.dropped += 1
            return False
        if self.conn.send_video(codec, dts, pts, keyframe, data):
            self._skip_video = False
            self._sent()
            return True
        self.dropped += 1
        self._skip_video = True
        return False

    def send_audio(self, codec: str, timestamp: int, data: bytes) -> bool:
        if self.conn.send_audio(codec, timestamp, data):
            self._sent()
            return True
        self.dropped += 1
        return False

    def send_video_config(self, codec: str, config: bytes, timestamp: int = 0) -> bool:
        """Send a codec configuration; a refused one makes the next frames wait for a
        keyframe (which the caller should precede with its configuration again)."""
        if self.conn.send_video_config(codec, config, timestamp):
            self._sent()
            return True
        self.dropped += 1
        self._skip_video = True
        return False

    def send_audio_config(self, codec: str, config: bytes, timestamp: int = 0) -> bool:
        ok = self.conn.send_audio_config(codec, config, timestamp)
        self._sent()
        return ok

    def send_packet(self, packet: MediaPacket) -> bool:
        """Send a packet of a live stream (what a LiveStream subscription yields)."""
        p = packet
        if p.kind is MediaKind.VIDEO:
            return self.send_video(p.codec, p.dts, p.pts, p.keyframe, p.data)
        return self.send_audio(p.codec, p.dts, p.data)

    def send_config(self, config: CodecConfig, timestamp: int = 0) -> bool:
        """Send a live stream's codec configuration (before its first packet, and again
        whenever it changes)."""
        if config.kind is MediaKind.VIDEO:
            return self.send_video_config(config.codec, config.data, timestamp)
        return self.send_audio_config(config.codec, config.data, timestamp)

    def send_metadata(self, metadata: Mapping[str, Any], timestamp: int = 0) -> bool:
        ok = self.conn.send_metadata(metadata, timestamp)
        self._sent()
        return ok

    # -- state and closing ----------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed.done()

    @property
    def bytes_sent(self) -> int:
        """Bytes handed to the kernel (not those still in our buffers)."""
        pending = self.transport.get_write_buffer_size() if self.transport is not None else 0
        return self.conn.bytes_sent - pending

    async def wait_closed(self) -> PublishError | None:
        """Wait until the connection ends; the error that ended it, or None after close()."""
        return await asyncio.shield(self._closed)

    async def close(self, linger: float = 5.0) -> None:
        """Unpublish politely, send what is queued, close; abort after ``linger`` seconds."""
        if not self._closed.done():
            self._closed.set_result(None)
        self.conn.unpublish()
        transport = self.transport
        if transport is None:
            return
        if not transport.is_closing():
            data = self.conn.data_to_send()
            if data:
                transport.write(data)
            transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(linger):
                await asyncio.shield(self._lost)
        self.abort()

    def abort(self) -> None:
        """Drop the connection at once, discarding what is queued."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.conn.close()
        if not self._closed.done():
            self._closed.set_result(None)
        if self.transport is not None:
            self.transport.abort()


__all__ = ["PublishError", "RtmpPublisher", "client_ssl_context"]
