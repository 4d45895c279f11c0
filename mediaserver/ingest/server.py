"""asyncio glue around the sans-I/O RTMP core: sockets, deadlines, the publish decision.

One ``RtmpSession`` (an ``asyncio.Protocol``) per socket feeds bytes to a ``ServerConnection``
and acts on its events. ``asyncio.Protocol`` rather than streams because ingest is the hot
path: ``data_received`` hands us the kernel's bytes with no extra buffer copy and no per-read
timeout future. Deadlines (handshake, publish, idle) are plain numbers on each session, checked
by one sweeper task for the whole server: timers are data.

The only asynchronous step of a connection is the publish decision (stream key lookup in the
database). While it runs, reading is paused and the events that followed are parked, so media
is never processed before the stream is accepted and never reordered.

What a client can make the server hold is bounded before it shows a stream key: connections per
address and in all, the size of messages (the core's setup limit), the replies it leaves unread
(``rtmp.max_send_buffer`` in the transport, ``rtmp.socket_send_buffer`` in the kernel) and the
time a closed connection may linger with unread replies (``rtmp.close_linger``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from mediaserver.addresses import address_key
from mediaserver.cluster.leases import ChannelLeases, ClusterUnavailable, EndedByCreator
from mediaserver.live import (
    AlreadyLive,
    CodecConfig,
    HealthPolicy,
    LiveRegistry,
    LiveStream,
    MediaKind,
    MediaPacket,
)
from mediaserver.metrics import Metrics
from mediaserver.rtmp import (
    AudioConfig,
    AudioFrame,
    ConnectionState,
    ConnectRequested,
    Limits,
    MediaIgnored,
    MetadataReceived,
    ProtocolError,
    PublishEnded,
    PublishRequested,
    ServerConnection,
    VideoConfig,
    VideoFrame,
)
from mediaserver.settings import Settings
from mediaserver.tasks import stop_task
from mediaserver.tls import ServerTls, TlsFilesError, load_server_tls
from storage import Database, queries
from storage.models import StreamStatus

from .low_water import low_water_for
from .proxied import ProxyAcceptor
from .rtmps import TlsServerProtocol

log = logging.getLogger(__name__)

VIDEO = MediaKind.VIDEO
AUDIO = MediaKind.AUDIO


def limits_from_settings(settings: Settings) -> Limits:
    r = settings.rtmp
    return Limits(
        max_chunk_size=r.max_chunk_size,
        max_message_size=r.max_message_size,
        max_chunk_streams=r.max_chunk_streams,
        max_amf_depth=r.max_amf_depth,
        out_chunk_size=r.out_chunk_size,
        window_ack_size=r.window_ack_size,
        max_message_streams=r.max_message_streams,
        max_setup_message_size=r.max_setup_message_size,
        max_name_length=r.max_name_length,
    )


def _app_name(app: str) -> str:
    """``live``, ``live/`` and ``live?token=x`` all name the same application."""
    return app.split("?", 1)[0].strip("/")


class RtmpSession(asyncio.Protocol):
    """One RTMP client connection."""

    def __init__(self, server: IngestServer) -> None:
        self.server = server
        self.conn = ServerConnection(server.limits)
        self.transport: asyncio.Transport | None = None
        self.peer: str = "?"
        self.host: str = "?"
        now = server.loop.time()
        self.connected_at = now
        self.last_rx = now
        self.handshake_done = False
        self.stream: LiveStream | None = None
        self.rtmp_stream_id: int | None = None
        self.closing = False
        self.closed_at = 0.0
        self.deciding = False  # a publish decision is running; later events wait in _queue
        self._queue: deque[Any] = deque()
        self._bytes_metric: Any = None
        # Bytes not yet added to aethex_ingest_bytes_total: the sweeper reports them in batches,
        # because a locked Prometheus increment per socket read was a tenth of ingest CPU.
        self.rx_unreported = 0
        # SO_RCVLOWAT now set on the socket (0: none); see low_water.py.
        self.low_water = 0

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        if peer:
            self.host = address_key(str(peer[0])) or str(peer[0])
            self.peer = f"{peer[0]}:{peer[1]}"
        server = self.server
        r = server.settings.rtmp
        server.sessions.add(self)
        per_host = server.per_address[self.host] = server.per_address.get(self.host, 0) + 1
        server.metrics.rtmp_connections.inc()
        if r.max_connections_per_address and per_host > r.max_connections_per_address:
            self.close("per_address_cap", abort=True)
        elif len(server.sessions) > r.max_connections:
            self.close("too_many_connections", abort=True)
        elif r.socket_send_buffer:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, r.socket_send_buffer)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_rx = self.server.loop.time()
        self.rx_unreported += len(data)
        try:
            events = self.conn.receive_data(data, self.last_rx)
        except ProtocolError as exc:
            log.info("rtmp %s: protocol error: %s", self.peer, exc)
            self.close("protocol_error")
            return
        if not self.handshake_done and self.conn.state is not ConnectionState.HANDSHAKE:
            self.handshake_done = True
        if events:
            self._queue.extend(events)
            if not self.deciding:
                self._process()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        server = self.server
        server.sessions.discard(self)
        left = server.per_address.pop(self.host, 1) - 1
        if left > 0:
            server.per_address[self.host] = left
        server.metrics.rtmp_connections.dec()
        self.closing = True
        self._finish_publish("disconnect")

    # -- events ---------------------------------------------------------------------------
    def _process(self) -> None:
        """Act on queued events in order; stop at a publish request until it is decided."""
        queue = self._queue
        while queue and not self.closing:
            event = queue.popleft()
            stream = self.stream
            etype = type(event)
            if etype is VideoFrame:
                if stream is not None:
                    stream.publish(
                        MediaPacket(
                            VIDEO, event.codec, event.dts, event.pts, event.keyframe, event.data
                        ),
                        self.last_rx,
                    )
            elif etype is AudioFrame:
                if stream is not None:
                    stream.publish(
                        MediaPacket(
                            AUDIO, event.codec, event.timestamp, event.timestamp, True, event.data
                        ),
                        self.last_rx,
                    )
            elif etype is VideoConfig:
                if stream is not None:
                    stream.set_config(CodecConfig(VIDEO, event.codec, event.data))
                    log.info(
                        "%s: video %s (%d-byte config)", stream.slug, event.codec, len(event.data)
                    )
            elif etype is AudioConfig:
                if stream is not None:
                    stream.set_config(
                        CodecConfig(
                            AUDIO, event.codec, event.data, event.sample_rate, event.channels
                        )
                    )
                    log.info(
                        "%s: audio %s %d Hz, %d channel(s)",
                        stream.slug,
                        event.codec,
                        event.sample_rate,
                        event.channels,
                    )
            elif etype is MetadataReceived:
                if stream is not None:
                    stream.metadata = dict(event.metadata)
            elif etype is ConnectRequested:
                # Events the core held back until the connect was answered come next.
                queue.extendleft(reversed(self._on_connect(event)))
            elif etype is PublishRequested:
                self.deciding = True
                if self.transport is not None:
                    self.transport.pause_reading()
                self.server.track(self.server.loop.create_task(self._decide_publish(event)))
                return
            elif etype is PublishEnded:
                self._finish_publish("unpublish")
            elif etype is MediaIgnored:
                log.warning("rtmp %s: ignoring %s media: %s", self.peer, event.kind, event.reason)

    def _on_connect(self, event: ConnectRequested) -> list[Any]:
        if _app_name(event.app) != self.server.settings.rtmp.app:
            app = self.conn.clip(event.app)
            log.info("rtmp %s: unknown app %r", self.peer, app)
            self.conn.reject_connect(f"unknown application {app!r}")
            self.close("bad_app")
            return []
        return self.conn.accept_connect()

    async def _decide_publish(self, event: PublishRequested) -> None:
        try:
            accepted = await self.server.claim(self, event)
        except Exception:
            log.exception("rtmp %s: publish decision failed", self.peer)
            accepted = False
            if not self.closing:
                self.conn.reject_publish(event.stream_id, "server error")
                self.close("server_error")
        self.deciding = False
        if accepted and not self.closing:
            self.rtmp_stream_id = event.stream_id
            self.conn.accept_publish(event.stream_id)
            self._process()
            self._flush()
            if self.transport is not None and not self.closing:
                self.transport.resume_reading()
        elif accepted:  # closed while deciding: undo
            self._finish_publish("disconnect")

    def set_low_water(self, mark: int) -> None:
        """Apply a new SO_RCVLOWAT (0: back to one byte); the kernel wakes us at once if what
        it holds already meets the new mark. A socket it cannot be set on is left alone."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark or 1)
        except OSError as exc:
            log.info("rtmp %s: cannot set SO_RCVLOWAT: %s", self.peer, exc)
            return
        self.low_water = mark

    def report_bytes(self) -> None:
        if self._bytes_metric is not None and self.rx_unreported:
            self._bytes_metric.inc(self.rx_unreported)
        self.rx_unreported = 0

    def _finish_publish(self, reason: str) -> None:
        self.report_bytes()
        stream, self.stream = self.stream, None
        self._bytes_metric = None
        if stream is not None:
            self.server.release(self, stream, reason)

    # -- output and closing ---------------------------------------------------------------
    def _flush(self) -> None:
        out = self.conn.data_to_send()
        transport = self.transport
        if not out or transport is None or transport.is_closing():
            return
        queued = transport.get_write_buffer_size() + len(out)
        if queued > self.server.settings.rtmp.max_send_buffer:
            # The client does not read what it asks for: drop it rather than hold its replies.
            log.info("rtmp %s: %d bytes of replies unread, closing", self.peer, queued)
            self.close("send_buffer", abort=True)
            return
        transport.write(out)

    def reject(self, stream_id: int, description: str, reason: str) -> None:
        self.conn.reject_publish(stream_id, description)
        self.close(reason)

    def close(self, reason: str, *, abort: bool = False) -> None:
        """Close after sending what is queued (or at once, dropping it, with ``abort``);
        ``reason`` labels the rejection metric. The sweeper cuts a graceful close that has not
        finished after ``rtmp.close_linger``."""
        if self.closing:
            return
        self.closing = True
        self.closed_at = self.server.loop.time()
        if reason not in ("unpublish", "normal", "ended"):
            self.server.metrics.rtmp_rejected.labels(reason).inc()
        if not abort:
            self._flush()
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()
        self._finish_publish("closed")

    def attach(self, stream: LiveStream) -> None:
        self.stream = stream
        self.rx_unreported = 0  # handshake and commands are not the channel's media bytes
        self._bytes_metric = self.server.metrics.ingest_bytes.labels(stream.slug)


class IngestServer:
    """Listens for RTMP (and RTMPS), checks stream keys, feeds accepted publishers to the
    registry."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        registry: LiveRegistry,
        metrics: Metrics,
        leases: ChannelLeases | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.registry = registry
        self.metrics = metrics
        # Cluster mode (issue 15): a channel goes live here only with its lease in Redis.
        self.leases = leases
        if leases is not None:
            leases.on_lost = self._lease_lost
            leases.should_renew = self._publisher_fresh
            leases.on_stop = self.disconnect_channel  # the creator ended it on another node
        # Cluster: run before a channel's new stream row (the composition root recovers the
        # rows an origin that died left LIVE).
        self.before_start: Callable[[int], Awaitable[None]] | None = None
        self.limits = limits_from_settings(settings)
        self.sessions: set[RtmpSession] = set()
        # Open connections (closing ones included) per address_key() of the peer.
        self.per_address: dict[str, int] = {}
        self.publishers: dict[int, RtmpSession] = {}  # channel id -> session
        self._claiming: set[int] = set()
        # channel id -> loop time until which a channel ended by its creator refuses publishers.
        self._cooldown: dict[int, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.base_events.Server | None = None
        # RTMPS (rtmp.tls_port): its listener, and the pair each new connection is made with.
        self._tls_server: asyncio.base_events.Server | None = None
        self.tls: ServerTls | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop  # set by start(), before any connection exists

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    @property
    def tls_port(self) -> int:
        """The RTMPS port, 0 when RTMPS is off."""
        if self._tls_server is None:
            return 0
        return self._tls_server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        r = self.settings.rtmp
        self._server = await self.loop.create_server(
            self._accepting(lambda: RtmpSession(self)),
            r.host,
            r.port,
            reuse_address=True,
            backlog=256,
        )
        self._sweeper = self.loop.create_task(self._sweep())
        log.info("RTMP ingest listening on %s:%d (app %r)", r.host, self.port, r.app)
        if r.tls_port:
            self.tls = load_server_tls(r.tls_cert_file, r.tls_key_file)
            self._tls_server = await self.loop.create_server(
                self._accepting(self._tls_session),
                r.host,
                r.tls_port,
                reuse_address=True,
                backlog=256,
            )
            log.info(
                "RTMPS ingest listening on %s:%d (certificate sha256 %s)",
                r.host,
                self.tls_port,
                self.tls.fingerprint,
            )

    def _accepting(self, make: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A listener's protocol factory: behind a TCP proxy (rtmp.proxy_protocol) each
        connection reads its PROXY header first (see proxied.py)."""
        if not self.settings.rtmp.proxy_protocol:
            return make
        return ProxyAcceptor(make, self.settings.rtmp, self.metrics)

    def _tls_session(self) -> asyncio.Protocol:
        """An RTMP session under TLS with the current pair (see ``reload_tls``)."""
        assert self.tls is not None
        session = RtmpSession(self)

        def failed(reason: str) -> None:
            log.info("rtmps %s: %s", session.peer, reason)
            session.close("tls_error", abort=True)

        return TlsServerProtocol(session, self.tls.context, failed)

    def reload_tls(self) -> bool:
        """Read the RTMPS certificate and key again (SIGHUP): new connections get the new pair,
        open ones keep theirs. A pair that does not load is logged and the current one kept."""
        r = self.settings.rtmp
        if self.tls is None:
            log.info("reload: RTMPS is off (rtmp.tls_port), no certificate to reload")
            return False
        try:
            new = load_server_tls(r.tls_cert_file, r.tls_key_file)
        except TlsFilesError as exc:
            log.error(
                "reload: keeping the current RTMPS certificate (sha256 %s): %s",
                self.tls.fingerprint,
                exc,
            )
            return False
        old, self.tls = self.tls, new
        if new.fingerprint == old.fingerprint:
            log.info("reload: RTMPS certificate unchanged (sha256 %s)", new.fingerprint)
        else:
            log.info(
                "reload: RTMPS certificate replaced (sha256 %s, was %s); new connections use it",
                new.fingerprint,
                old.fingerprint,
            )
        return True

    async def stop(self) -> None:
        for listener in (self._server, self._tls_server):
            if listener is not None:
                listener.close()
        await stop_task(self._sweeper)
        for session in list(self.sessions):
            session.close("normal")
        for task in list(self._tasks):
            try:
                async with asyncio.timeout(5):
                    await asyncio.shield(task)
            except TimeoutError:
                with contextlib.suppress(Exception):  # it is logged where it failed
                    await stop_task(task)
            except asyncio.CancelledError:
                task.cancel()
        for listener in (self._server, self._tls_server):
            if listener is not None:
                await listener.wait_closed()

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- deadlines ------------------------------------------------------------------------
    async def _sweep(self) -> None:
        r = self.settings.rtmp
        interval = min(0.25, r.handshake_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = self.loop.time()
            for s in list(self.sessions):
                if s.closing:
                    # Closed but its last replies are still unread: cut it after the linger.
                    if s.transport is not None and now - s.closed_at > r.close_linger:
                        s.transport.abort()
                    continue
                s.report_bytes()
                stream = s.stream
                if stream is not None and not s.deciding:
                    mark = low_water_for(
                        stream.stats, now, s.last_rx, r.read_low_water, r.read_low_water_quiet
                    )
                    if mark != s.low_water:
                        s.set_low_water(mark)
                if not s.handshake_done and now - s.connected_at > r.handshake_timeout:
                    log.info("rtmp %s: handshake timeout", s.peer)
                    s.close("handshake_timeout")
                elif (
                    s.stream is None
                    and not s.deciding
                    and now - s.connected_at > r.handshake_timeout + r.publish_timeout
                ):
                    log.info("rtmp %s: no publish in time", s.peer)
                    s.close("publish_timeout")
                elif now - s.last_rx > r.idle_timeout:
                    log.info("rtmp %s: idle timeout", s.peer)
                    s.close("idle_timeout")

    # -- the publish decision -------------------------------------------------------------
    async def claim(self, session: RtmpSession, event: PublishRequested) -> bool:
        """Check the key and take the channel for this session; answer the client if refused."""
        key = event.name
        if not key:
            session.reject(event.stream_id, "missing stream key", "bad_key")
            return False
        async with self.db.session() as db:
            channel = await queries.find_channel_by_stream_key(db, key)
        if session.closing:
            return False
        if channel is None:
            log.info("rtmp %s: publish refused: unknown stream key", session.peer)
            session.reject(event.stream_id, "unknown stream key", "bad_key")
            return False
        until = self._cooldown.get(channel.id)
        if until is not None:
            if self.loop.time() < until:
                log.info(
                    "rtmp %s: publish refused: %s was just ended by its creator",
                    session.peer,
                    channel.slug,
                )
                session.reject(
                    event.stream_id,
                    "stream was ended by its creator; try again later",
                    "ended_cooldown",
                )
                return False
            del self._cooldown[channel.id]
        current = self.publishers.get(channel.id)
        if channel.id in self._claiming or current is not None:
            takeover = self.settings.rtmp.takeover_after
            stale = (
                current is not None
                and takeover > 0
                and self.loop.time() - current.last_rx >= takeover
            )
            if current is None or not stale:
                log.info("rtmp %s: publish refused: %s is already live", session.peer, channel.slug)
                session.reject(event.stream_id, "stream key already publishing", "already_live")
                return False
            log.info(
                "rtmp %s: taking over %s from stale publisher %s",
                session.peer,
                channel.slug,
                current.peer,
            )
            current.close("taken_over")
        self._claiming.add(channel.id)
        leased = accepted = False
        try:
            if self.leases is not None:
                leased = await self._claim_lease(session, event, channel.id, channel.slug)
                if not leased or session.closing:
                    return False
                if self.before_start is not None:
                    await self.before_start(channel.id)
            now = datetime.now(UTC)
            async with self.db.session() as db:
                row = await queries.start_stream(db, channel.id, now)
                await db.commit()
            if session.closing:
                await self._end_row(row.id, "closed before start")
                return False
            try:
                live = self.registry.start(
                    channel_id=channel.id, slug=channel.slug, stream_id=row.id, started_at=now
                )
            except AlreadyLive:
                await self._end_row(row.id, "already live")
                session.reject(event.stream_id, "stream key already publishing", "already_live")
                return False
            self.publishers[channel.id] = session
            if self.leases is not None:
                self.leases.attach(channel.id, row.id)
            live.health_policy = self.health_policy
            live.disconnect = lambda reason, s=session: self.disconnect(s, reason)
            session.attach(live)
            self.metrics.streams_live.set(len(self.registry))
            log.info("rtmp %s: %s is live (stream %d)", session.peer, channel.slug, row.id)
            accepted = True
            return True
        finally:
            self._claiming.discard(channel.id)
            if leased and not accepted and self.leases is not None:
                self.leases.release(channel.id)

    async def _claim_lease(
        self, session: RtmpSession, event: PublishRequested, channel_id: int, slug: str
    ) -> bool:
        """Claim the channel's lease for this origin; refuse the publisher (as a duplicate, or
        because Redis does not answer) when it cannot be had."""
        assert self.leases is not None
        try:
            ours = await self.leases.claim(channel_id, slug)
        except EndedByCreator:
            log.info(
                "rtmp %s: publish refused: %s was just ended by its creator", session.peer, slug
            )
            if not session.closing:
                session.reject(
                    event.stream_id,
                    "stream was ended by its creator; try again later",
                    "ended_cooldown",
                )
            return False
        except ClusterUnavailable as exc:
            log.warning(
                "rtmp %s: publish refused: %s: cluster state unavailable (Redis: %s)",
                session.peer,
                slug,
                exc,
            )
            if not session.closing:
                session.reject(
                    event.stream_id, "cluster unavailable; try again later", "cluster_unavailable"
                )
            return False
        if not ours:
            log.info("rtmp %s: publish refused: %s is live on another origin", session.peer, slug)
            if not session.closing:
                session.reject(event.stream_id, "stream key already publishing", "already_live")
            return False
        return True

    def _publisher_fresh(self, channel_id: int) -> bool:
        """False once the channel's publisher has been silent for ``rtmp.takeover_after``: its
        lease then expires, and another origin may take over as this one would locally."""
        takeover = self.settings.rtmp.takeover_after
        session = self.publishers.get(channel_id)
        if takeover <= 0 or session is None:
            return True
        return self.loop.time() - session.last_rx < takeover

    def _lease_lost(self, channel_id: int) -> None:
        """Another origin holds the channel now (Redis lost our lease, or our silent publisher
        let it expire, and it was claimed meanwhile): end the stream here so there is one
        publisher."""
        session = self.publishers.get(channel_id)
        if session is not None:
            log.warning("rtmp %s: the channel's lease is another origin's: closing", session.peer)
            session.close("lease_lost")

    @property
    def health_policy(self) -> HealthPolicy:
        lv = self.settings.live
        return HealthPolicy(
            segment_duration=self.settings.hls.segment_duration,
            bitrate_low=lv.bitrate_warn_low,
            bitrate_high=lv.bitrate_warn_high,
            speed_low=lv.speed_warn_below,
        )

    def disconnect(self, session: RtmpSession, reason: str = "ended") -> None:
        """Close a publisher on the creator's request; the channel then pauses for
        ``rtmp.ended_cooldown`` so the encoder's auto-reconnect does not resume it."""
        stream = session.stream
        if stream is not None and self.settings.rtmp.ended_cooldown > 0:
            self._cooldown[stream.channel_id] = self.loop.time() + self.settings.rtmp.ended_cooldown
            if self.leases is not None:  # and on every other origin of the cluster
                self.leases.set_cooldown(stream.channel_id, self.settings.rtmp.ended_cooldown)
        log.info("rtmp %s: disconnecting the publisher (%s)", session.peer, reason)
        session.close(reason)

    def disconnect_channel(self, channel_id: int, reason: str = "ended") -> bool:
        """Close the channel's publishing connection, if it has one."""
        session = self.publishers.get(channel_id)
        if session is None:
            return False
        self.disconnect(session, reason)
        return True

    def release(self, session: RtmpSession, stream: LiveStream, reason: str) -> None:
        """The publisher stopped: the stream leaves the registry, whose listeners (the
        broadcast lifecycle) finish the row."""
        if self.publishers.get(stream.channel_id) is session:
            del self.publishers[stream.channel_id]
            if self.leases is not None:
                self.leases.release(stream.channel_id)
        self.registry.end(stream)
        self.metrics.streams_live.set(len(self.registry))
        log.info("%s stream %d ended (%s)", stream.slug, stream.stream_id, reason)

    async def _end_row(self, stream_id: int, reason: str) -> None:
        """Close a row whose stream never made it into the registry."""
        try:
            async with self.db.session() as db:
                await queries.end_stream(db, stream_id, datetime.now(UTC), StreamStatus.OFFLINE)
                await db.commit()
        except Exception:
            log.exception("could not close stream row %d (%s)", stream_id, reason)
