"""Relays every live stream to its channel's enabled destinations (issue 14).

One :class:`Relay` per (live stream, destination): its own task, its own bounded
subscription to the live stream, its own RTMP publisher and its own retry schedule, so a
destination that refuses, times out, blackholes or drops the connection only ever delays
itself. Nothing here runs on the ingest path: the live stream hands packets to the
subscription, which drops (to the next keyframe, counted) when the relay falls behind.

The manager brings the relays in line with the live channels' enabled destinations every
``restream.refresh_interval`` seconds and at once when a stream starts or ends or the web layer
reports an edit (``changed``). It reads the rows again only when it must: on those events, and,
since another process's edits reach it only through the database, every refresh in a cluster
(where web nodes edit) but only every ``ROWS_RECHECK`` seconds on one node (where every edit goes
through this process's API, and a row edited by hand is still picked up). A destination added,
edited (URL, key, source, CA file) or disabled while live takes effect within a refresh. The
once-a-second read was the largest of a live server's periodic costs (about 1.3 ms each with 20
channels live), paid to find nothing changed.

Stream keys never reach a log line or a status: targets are logged by ``redacted`` URL, and
``PublishError`` never carries the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from mediaserver.live import CodecConfig, LiveRegistry, LiveStream, MediaKind, MediaPacket
from mediaserver.live.subscription import Subscription
from mediaserver.rtmp import PublishTarget
from mediaserver.settings import RestreamSettings
from mediaserver.tasks import stop_task
from storage import Database
from storage import restream as store
from storage.restream_models import ORIGINAL

from .client import PublishError, RtmpPublisher, client_ssl_context
from .rungs import H264, RungTap

log = logging.getLogger(__name__)

Item = MediaPacket | CodecConfig

# The value of aethex_restream_state for each state.
STATES = {"stopped": 0, "connecting": 1, "live": 2, "retrying": 3}


class RestreamMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["channel", "destination"]
        self.state = Gauge(
            "aethex_restream_state",
            "Each restream destination's state: 0 stopped, 1 connecting, 2 live, 3 retrying.",
            labels,
            registry=registry,
        )
        self.bytes = Counter(
            "aethex_restream_bytes",
            "Bytes relayed to each restream destination (handed to the kernel).",
            labels,
            registry=registry,
        )
        self.reconnects = Counter(
            "aethex_restream_reconnects",
            "Attempts to reach a restream destination again after a failure or disconnect.",
            labels,
            registry=registry,
        )
        self.dropped = Counter(
            "aethex_restream_dropped_packets",
            "Packets a restream destination lost because it fell behind (to the next keyframe).",
            labels,
            registry=registry,
        )


@dataclass(frozen=True)
class Plan:
    """What a relay was started with; a change of any field restarts it."""

    destination_id: int
    name: str
    url: str
    key: str
    source: str
    ca_file: str | None
    preset: str = "custom"


class Relay:
    """One destination of one live stream: connect, relay, retry with capped backoff."""

    def __init__(
        self,
        manager: RestreamManager,
        stream: LiveStream,
        plan: Plan,
        metrics: RestreamMetrics,
        backlog: Sequence[Item] | None = None,
    ) -> None:
        self.manager = manager
        self.stream = stream
        self.plan = plan
        self.settings = manager.settings
        labels = (stream.slug, str(plan.destination_id))
        self._state_gauge = metrics.state.labels(*labels)
        self._bytes_counter = metrics.bytes.labels(*labels)
        self._reconnects = metrics.reconnects.labels(*labels)
        self._dropped_counter = metrics.dropped.labels(*labels)
        self.state = "connecting"
        self.since = time.monotonic()
        self.live_since: float | None = None
        self.next_attempt: float | None = None
        self.last_error: str | None = None
        self.attempts = 0
        self.reconnects = 0
        self.bytes_sent = 0  # over every connection of this relay
        self.dropped = 0
        self.bitrate = 0.0
        self._conn_bytes = 0  # of the current connection, already counted
        self._conn_dropped = 0
        self._sample: tuple[float, int] | None = None
        self._publisher: RtmpPublisher | None = None
        self._sub: Any = None
        self.sending: str | None = None  # what goes out: "original" or a rung's name
        # A relay started with the stream gets it from its first frame: what arrived before
        # it existed (``backlog``), then everything after, queued while it connects.
        # A rung's relay started with the stream subscribes to the rendition before the
        # transcoder's first output, for the same reason.
        self._early: Subscription | None = None
        self._early_unsub: Callable[[], None] | None = None
        name, size = f"restream-{plan.destination_id}", manager.settings.queue_size
        if backlog is not None and plan.source == ORIGINAL:
            early = self._early = stream.subscribe(name, size)
            self._early_unsub = functools.partial(stream.unsubscribe, early)
            for item in backlog:
                early.put(item)
        elif backlog is not None and manager.rung_taps is not None:
            tap = manager.rung_taps(stream.stream_id)
            if tap is not None and not tap.ended:
                early = self._early = tap.subscribe(plan.source, name, size)
                self._early_unsub = functools.partial(tap.unsubscribe, plan.source, early)
        self._set_state("connecting")
        self.task = asyncio.get_running_loop().create_task(self._run())

    # -- state ----------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        self.state = state
        self.since = time.monotonic()
        self._state_gauge.set(STATES[state])

    def tick(self, now: float) -> None:
        """Account bytes and drops of the current connection (each refresh)."""
        pub, sub = self._publisher, self._sub
        if pub is not None:
            sent = pub.bytes_sent
            if sent > self._conn_bytes:
                self._bytes_counter.inc(sent - self._conn_bytes)
                self.bytes_sent += sent - self._conn_bytes
                self._conn_bytes = sent
            lost = pub.dropped + (sub.dropped if sub is not None else 0)
            if lost > self._conn_dropped:
                self._dropped_counter.inc(lost - self._conn_dropped)
                self.dropped += lost - self._conn_dropped
                self._conn_dropped = lost
        if self._sample is not None and now > self._sample[0]:
            then, before = self._sample
            if now - then >= 0.5:
                self.bitrate = (self.bytes_sent - before) * 8 / (now - then)
                self._sample = (now, self.bytes_sent)
        else:
            self._sample = (now, self.bytes_sent)

    def status(self, now: float) -> dict[str, Any]:
        live = self.state == "live"
        return {
            "state": self.state,
            "since_seconds": round(now - self.since, 1),
            "uptime_seconds": round(now - self.live_since, 1)
            if live and self.live_since is not None
            else None,
            "bitrate_kbps": round(self.bitrate / 1000, 1) if live else None,
            "bytes_sent": self.bytes_sent,
            "dropped_packets": self.dropped,
            "reconnects": self.reconnects,
            "next_attempt_in": round(max(0.0, self.next_attempt - now), 1)
            if self.state == "retrying" and self.next_attempt is not None
            else None,
            "last_error": self.last_error,
            "sending": self.sending if live else None,
        }

    # -- the relay ------------------------------------------------------------------------
    async def _run(self) -> None:
        s = self.settings
        failures = 0
        try:
            while not self.stream.ended:
                if self.attempts:
                    self.reconnects += 1
                    self._reconnects.inc()
                self.attempts += 1
                self._set_state("connecting")
                started = time.monotonic()
                ended = await self._attempt()
                if ended or self.stream.ended:
                    break
                if time.monotonic() - started >= s.stable_after:
                    failures = 0
                delay = min(s.backoff_max, s.backoff_base * (2**failures))
                failures += 1
                self.next_attempt = time.monotonic() + delay
                self._set_state("retrying")
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # a bug here must not reach ingest or other relays
            log.exception("restream %s -> %d failed", self.stream.slug, self.plan.destination_id)
            self.last_error = f"internal error: {type(exc).__name__}"
        finally:
            self._drop_early()
            self.tick(time.monotonic())
            self._set_state("stopped")

    async def _attempt(self) -> bool:
        """One connection: True when the live stream ended (no retry), False to retry."""
        s = self.settings
        plan = self.plan
        try:
            target = PublishTarget.parse(plan.url, plan.key)
        except ValueError as exc:
            self.last_error = str(exc)
            self._drop_early()
            return False
        source: str | None = plan.source  # None: the ladder's top rung
        if source == ORIGINAL and plan.preset != "custom" and not await self._source_is_h264():
            # A platform preset takes H.264 only: send the top rung of our (H.264) ladder.
            source = None
            self._drop_early()
        tap: RungTap | None = None
        if source != ORIGINAL:
            found = await self._rung_tap(source)
            if found is None:
                self._drop_early()
                return False
            tap, source = found
        self.sending = source
        try:
            address = await self._check_address(target)
            ssl_context = None
            if target.tls:
                ca_path = self._ca_path(plan.ca_file)
                ssl_context = await asyncio.to_thread(client_ssl_context, ca_path)
            publisher = await RtmpPublisher.open(
                target,
                address=address,
                ssl_context=ssl_context,
                connect_timeout=s.connect_timeout,
                setup_timeout=s.setup_timeout,
                stall_timeout=s.stall_timeout,
                max_buffered=s.max_buffered,
                write_buffer=s.write_buffer,
            )
        except PublishError as exc:
            self.last_error = str(exc)
            log.info("restream %s -> %s: %s", self.stream.slug, target.redacted, exc)
            self._drop_early()
            return False
        except (OSError, ValueError) as exc:  # the CA file
            self.last_error = f"CA file: {type(exc).__name__}"
            self._drop_early()
            return False
        except asyncio.CancelledError:
            self._drop_early()
            raise
        self._publisher = publisher
        name = f"restream-{plan.destination_id}"
        if self._early is not None and self._early_unsub is not None:  # the first connection
            sub = self._sub = self._early
            unsubscribe = self._early_unsub
            self._early = self._early_unsub = None
        elif tap is None:
            sub = self._sub = self.stream.subscribe(name, s.queue_size)
            unsubscribe = functools.partial(self.stream.unsubscribe, sub)
        else:
            sub = self._sub = tap.subscribe(source, name, s.queue_size)
            unsubscribe = functools.partial(tap.unsubscribe, source, sub)
        # Loss counts from here: what overflowed while connecting was never the destination's.
        self._conn_bytes, self._conn_dropped = 0, sub.dropped
        self.live_since = time.monotonic()
        self._sample = None
        self._set_state("live")
        log.info("restream %s -> %s: live", self.stream.slug, target.redacted)
        pump = asyncio.get_running_loop().create_task(self._pump(publisher, sub, tap is None))
        closed = asyncio.ensure_future(publisher.wait_closed())
        try:
            await asyncio.wait({pump, closed}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pump.cancel()
            closed.cancel()
            unsubscribe()
            self.tick(time.monotonic())
            await publisher.close(linger=1.0)
            raise
        self.tick(time.monotonic())
        unsubscribe()
        self._sub = None
        self._publisher = None
        if pump.done() and not pump.cancelled() and pump.exception() is None:
            closed.cancel()
            await publisher.close(linger=2.0)  # the stream ended: unpublish politely
            return True
        with contextlib.suppress(Exception):
            await stop_task(pump)
        error = await closed
        publisher.abort()
        self.last_error = str(error) if error is not None else "the connection closed"
        log.info("restream %s -> %s: %s", self.stream.slug, target.redacted, self.last_error)
        return False

    async def _pump(self, publisher: RtmpPublisher, sub: Any, original: bool) -> None:
        """Copy the stream; times start at 0 on each connection (the wire has no sign)."""
        metadata = self.stream.metadata
        if metadata and original:  # a rung's picture differs from what the publisher said
            publisher.send_metadata(metadata)
        base: int | None = None
        last = 0
        video = MediaKind.VIDEO
        publisher.corked = True  # one write per batch of frames, not per frame
        while True:
            if len(sub):
                item = sub.get_nowait()
            else:
                publisher.flush()  # about to wait: what this wake-up queued goes out now
                item = await sub.get()
            if item is None:
                return
            if isinstance(item, CodecConfig):
                publisher.send_config(item, last)
                continue
            if base is None:
                base = item.dts
            dts = item.dts - base
            if dts < 0:  # audio from before the first keyframe
                continue
            last = dts
            if item.kind is video:
                publisher.send_video(item.codec, dts, item.pts - base, item.keyframe, item.data)
            else:
                publisher.send_audio(item.codec, dts, item.data)

    def _drop_early(self) -> None:
        if self._early_unsub is not None:
            self._early_unsub()
        self._early = self._early_unsub = None

    async def _source_is_h264(self) -> bool:
        """Whether the publisher sends H.264 (waiting a moment for its configuration)."""
        deadline = time.monotonic() + self.settings.setup_timeout
        while True:
            config = self.stream.video_config
            if config is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
        return config is None or config.codec == H264

    async def _rung_tap(self, rung: str | None) -> tuple[RungTap, str] | None:
        """The live ladder's output for ``rung`` (None: the top one), once the transcoder
        has announced it (it may take a moment after the stream starts); None with an error."""
        find = self.manager.rung_taps
        deadline = time.monotonic() + self.settings.setup_timeout
        while True:
            tap = find(self.stream.stream_id) if find is not None else None
            if tap is None or tap.ended:
                self.last_error = "this server does not encode the ladder (transcode is off)"
                return None
            names = tap.renditions()
            top = tap.top()
            if rung is None and top is not None:
                return tap, top
            if rung is not None and rung in names:
                return tap, rung
            if time.monotonic() >= deadline:
                have = ", ".join(names) or "none yet"
                self.last_error = (
                    f"the rung {rung or 'top'!r} is not in this stream's ladder ({have})"
                )
                return None
            await asyncio.sleep(0.1)

    async def _check_address(self, target: PublishTarget) -> str | None:
        """The address to connect to: the host resolved once and checked, so a second
        resolution at connect time cannot answer with another (DNS rebinding); None when
        private addresses are allowed (connect by name)."""
        if self.settings.allow_private_addresses:
            return None
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise PublishError("connect", f"cannot resolve the host: {exc}") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global:
                raise PublishError(
                    "connect",
                    "the host is a non-public address (restream.allow_private_addresses is off)",
                )
        if not infos:
            raise PublishError("connect", "the host has no address")
        return str(infos[0][4][0])

    def _ca_path(self, name: str | None) -> str | None:
        """A destination's CA file: a name inside restream.ca_dir, never a path of its own."""
        if not name:
            return None
        if not self.settings.ca_dir or "/" in name or name.startswith("."):
            raise PublishError("connect", "this server trusts no extra CA files (restream.ca_dir)")
        return str(Path(self.settings.ca_dir) / name)

    def stop(self) -> None:
        self.task.cancel()


# Seconds between reads of the destination rows when nothing reported an edit and no other
# process edits them (one node): what an edit made outside the server waits at most.
ROWS_RECHECK = 30.0


class RestreamManager:
    """Starts and stops relays as channels go live and destinations change."""

    def __init__(
        self,
        settings: RestreamSettings,
        db: Database,
        registry: LiveRegistry,
        metrics_registry: CollectorRegistry,
        rung_taps: Callable[[int], RungTap | None] | None = None,
        *,
        edited_elsewhere: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock
        # Other processes edit the rows (a cluster's web nodes): read them at every refresh.
        # ``clock`` times those reads (a test's own clock stands in for the 30 s recheck).
        self._reread_every = (
            settings.refresh_interval
            if edited_elsewhere
            else max(ROWS_RECHECK, settings.refresh_interval)
        )
        # The enabled destinations last read, the live channels they were read for, when
        # (monotonic), and whether an edit reported since makes them stale.
        self._rows: Sequence[Any] = []
        self._rows_for: frozenset[int] = frozenset()
        self._rows_at = -float("inf")
        self._rows_stale = True
        # A live stream's id -> its ladder's outputs (for destinations that ask for a rung).
        self.rung_taps = rung_taps
        self.db = db
        self.metrics = RestreamMetrics(metrics_registry)
        self._live: dict[int, LiveStream] = {}  # channel id -> its live stream
        # Per stream that just started: what it sent before the first look at its
        # destinations, handed to the relays that look starts (so they miss no frame).
        self._pending: dict[int, Subscription] = {}
        self.relays: dict[tuple[int, int], Relay] = {}  # (stream id, destination id) -> relay
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        if settings.enabled:
            registry.on_started(self._started)
            registry.on_ended(self._ended)

    # -- live registry listeners ------------------------------------------------------------
    def _started(self, stream: LiveStream) -> None:
        self._live[stream.channel_id] = stream
        self._pending[stream.stream_id] = stream.subscribe(
            "restream-start", self.settings.queue_size
        )
        self._wake.set()

    def _ended(self, stream: LiveStream) -> None:
        pending = self._pending.pop(stream.stream_id, None)
        if pending is not None:
            stream.unsubscribe(pending)
        if self._live.get(stream.channel_id) is stream:
            del self._live[stream.channel_id]
        # Relays drain what the subscription holds and unpublish; those waiting to retry stop.
        for (stream_id, _), relay in list(self.relays.items()):
            if stream_id == stream.stream_id and relay.state != "live":
                relay.stop()
        self._wake.set()

    def changed(self, channel_id: int) -> None:
        """A destination of ``channel_id`` was added, edited or removed (by this process's
        API): read the rows at once if the channel is live (otherwise its go-live reads them)."""
        if channel_id in self._live:
            self._rows_stale = True
            self._wake.set()

    # -- the refresh loop -------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None
        relays = list(self.relays.values())
        for relay in relays:
            relay.stop()
        if relays:
            await asyncio.wait([r.task for r in relays], timeout=5.0)
        self.relays.clear()

    async def _loop(self) -> None:
        while True:
            # Cleared before the refresh: a wake-up during it (a stream started while the
            # rows were read) runs the next refresh at once.
            self._wake.clear()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database busy or gone for a moment: try at the next look
                log.exception("restream: refreshing the destinations failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.refresh_interval):
                    await self._wake.wait()

    async def refresh(self) -> None:
        """Bring the relays in line with the live channels' enabled destinations."""
        now = time.monotonic()
        for key, relay in list(self.relays.items()):
            relay.tick(now)
            if relay.task.done():
                del self.relays[key]
        live = dict(self._live)
        rows = await self._destinations(live, self.clock())
        wanted: dict[tuple[int, int], tuple[LiveStream, Plan]] = {}
        for row in rows:
            stream = live.get(row.channel_id)
            if stream is None or stream.ended:
                continue
            plan = Plan(
                row.id,
                row.name,
                row.ingest_url,
                row.stream_key,
                row.source,
                row.ca_file,
                row.preset,
            )
            wanted[(stream.stream_id, row.id)] = (stream, plan)
        stopping = []
        for key, relay in list(self.relays.items()):
            want = wanted.get(key)
            if relay.stream.ended:
                continue  # draining its last packets, or stopping
            if want is None or want[1] != relay.plan:
                relay.stop()
                stopping.append(relay.task)
                del self.relays[key]
        if stopping:
            # An edited destination's old session unpublishes before the new one connects
            # (platforms refuse a second publish with the same key); close lingers ~1 s.
            await asyncio.wait(stopping, timeout=2.0)
        # No await from here on: the backlog and the relays' own subscriptions meet exactly.
        backlogs = {
            stream.stream_id: _drain(self._pending.pop(stream.stream_id), stream)
            for stream in live.values()
            if stream.stream_id in self._pending
        }
        for key, (stream, plan) in wanted.items():
            if key not in self.relays:
                backlog = backlogs.get(stream.stream_id)
                self.relays[key] = Relay(self, stream, plan, self.metrics, backlog)

    async def _destinations(self, live: dict[int, LiveStream], now: float) -> Sequence[Any]:
        """The live channels' enabled destinations: read again if an edit was reported, the
        live channels changed or ``_reread_every`` passed; otherwise as last read."""
        channels = frozenset(live)
        if (
            not self._rows_stale
            and channels == self._rows_for
            and now - self._rows_at < self._reread_every
        ):
            return self._rows
        self._rows_stale = False  # before the read: an edit reported during it reads again
        rows: Sequence[Any] = []
        if live:
            try:
                async with self.db.session() as session:
                    rows = await store.enabled_destinations(session, list(live))
            except BaseException:
                self._rows_stale = True
                raise
        self._rows, self._rows_for, self._rows_at = rows, channels, now
        return rows

    # -- what the dashboard shows -------------------------------------------------------------
    def status(self, channel_id: int) -> dict[int, dict[str, Any]]:
        """Destination id -> its relay's status, for the channel's live stream (if any)."""
        stream = self._live.get(channel_id)
        if stream is None:
            return {}
        now = time.monotonic()
        return {
            dest: relay.status(now)
            for (stream_id, dest), relay in self.relays.items()
            if stream_id == stream.stream_id
        }


def _drain(sub: Subscription, stream: LiveStream) -> list[Item]:
    """What ``sub`` holds now, and unsubscribe it (never waits)."""
    items: list[Item] = []
    while len(sub):
        try:
            item = sub.get_blocking(timeout=0)
        except TimeoutError:
            break
        if item is None:
            break
        items.append(item)
    stream.unsubscribe(sub)
    return items


__all__ = ["RestreamManager", "RestreamMetrics", "STATES"]
