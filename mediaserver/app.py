"""Wires storage, the live registry, ingest and the web app into one process."""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal
from collections.abc import Callable

from aiohttp import web

from mediaserver import memory
from mediaserver.broadcast import Broadcasts
from mediaserver.cluster.counts import ClusterCounts
from mediaserver.cluster.leases import (
    ChannelLeases,
    ClusterUnavailable,
    leased_channels,
    streams_alive,
)
from mediaserver.cluster.mirror import RemoteStreams
from mediaserver.cluster.node import NodeIdentity
from mediaserver.cluster.redis import make_redis
from mediaserver.ingest import IngestServer
from mediaserver.live import LiveRegistry
from mediaserver.metrics import Metrics
from mediaserver.objects import Uploader, make_store, publish_unsent
from mediaserver.restream.manager import RestreamManager
from mediaserver.settings import Settings
from mediaserver.tasks import stop_task
from storage import Database, queries
from storage.objects import ObjectStoreError
from webapp import HLS_KEY, HttpFront, create_app

log = logging.getLogger("aethex")


class Server:
    """Everything ``aethex serve`` runs; tests start one in-process on free ports."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.registry = LiveRegistry(
            settings.live.consumer_queue_size,
            on_drop=lambda ch, consumer, n: self.metrics.live_dropped.labels(ch, consumer).inc(n),
        )
        self.db = Database(
            settings.effective_database_url, inline_read_ms=settings.database.inline_read_ms
        )
        # Issue 15: who this node is, and the process's one Redis client (None on one node).
        self.node = NodeIdentity.from_settings(settings)
        self.redis = make_redis(settings)
        # Viewer counts, chat limits, failed logins and chat presence shared by the cluster.
        self.counts = (
            None
            if self.redis is None
            else ClusterCounts(
                self.redis,
                self.node.node_id,
                settings.cluster.counts_ttl,
                self.metrics.cluster_redis_errors,
            )
        )
        # An origin in a cluster claims each live channel with a lease in Redis (issue 15).
        self.leases = (
            ChannelLeases(
                self.redis,
                self.node,
                lease_seconds=settings.cluster.lease_seconds,
                renew_interval=settings.cluster.renew_interval,
                on_error=lambda op: self.metrics.cluster_lease_errors.labels(op).inc(),
                on_count=self.metrics.cluster_leases.labels(self.node.node_id).set,
            )
            if self.redis is not None and self.node.takes_publishers
            else None
        )
        self.ingest = IngestServer(settings, self.db, self.registry, self.metrics, self.leases)
        if self.leases is not None:
            self.ingest.before_start = self._recover_dead_rows
        self._reaper: asyncio.Task[None] | None = None
        self._resend: asyncio.Task[int] | None = None  # recordings not in the bucket yet
        # Every node of a cluster knows the streams the origins ingest, for its pages and API
        # (an origin too: a viewer's page may reach one that does not hold the stream).
        self.mirror = (
            RemoteStreams(
                self.redis,
                self.db,
                self.registry,
                settings.cluster.renew_interval,
                on_error=lambda op: self.metrics.cluster_lease_errors.labels(op).inc(),
            )
            if self.redis is not None
            else None
        )
        # Where recordings and uploads are kept (data_dir, or an S3 bucket: issue 15), and the
        # uploader that copies finished media files there in S3 mode.
        self.objects = make_store(settings, self.metrics)
        self.uploader = Uploader(settings, self.objects, self.metrics)
        self.broadcasts = Broadcasts(
            settings, self.db, self.registry, self.metrics, uploader=self.uploader
        )
        # Relays each live stream to its channel's destinations (issue 14).
        self.restream = RestreamManager(
            settings.restream,
            self.db,
            self.registry,
            self.metrics.registry,
            rung_taps=self.broadcasts.rung_tap,
            # In a cluster the web nodes edit destinations; on one node only our own API does.
            edited_elsewhere=self.redis is not None,
        )
        self._runner: web.AppRunner | None = None
        self._http: asyncio.Server | None = None
        self._front: HttpFront | None = None

    @property
    def http_port(self) -> int:
        assert self._http is not None
        return self._http.sockets[0].getsockname()[1]

    @property
    def rtmp_port(self) -> int:
        """What ingest listens on; on a web node (no ingest), the configured port."""
        return self.ingest.port if self.node.takes_publishers else self.settings.rtmp.port

    async def _recover_orphans(self) -> None:
        """Streams a crash left open, except (in a cluster) those another origin holds a
        lease on: they are live there, not orphans. Without an answer from Redis nothing is
        recovered this time rather than a live stream closed."""
        keep: set[int] = set()
        if self.redis is not None:
            try:
                keep = await leased_channels(self.redis)
            except ClusterUnavailable as exc:
                log.warning("not recovering open streams: Redis does not answer (%s)", exc)
                return
        await self.broadcasts.recover_orphans(keep)

    async def _recover_dead_rows(self, channel_id: int) -> None:
        """Before a channel's new stream on this origin: its LIVE rows that no origin marks as
        its own (``aethex:stream:{id}``) are an origin's that died. They are recovered (the
        recording, from the object store in S3 mode) rather than closed empty."""
        assert self.redis is not None
        async with self.db.session() as session:
            ids = await queries.live_stream_ids(session, channel_id)
        try:
            alive = await streams_alive(self.redis, ids)
        except ClusterUnavailable:
            return  # unknown: the new row closes them as before
        dead = [i for i in ids if i not in alive]
        if dead:
            async with self.db.session() as session:
                orphans = await queries.take_streams(session, dead)
                await session.commit()
            self.broadcasts.recover(orphans)

    async def _reap_dead_rows(self) -> None:
        """Every lease_seconds: LIVE rows no origin has marked as its own for a whole period
        (so not a Redis restart, after which the marks come back within a renewal) are an
        origin's that died with no publisher back since; one origin takes each (rows locked)
        and recovers it, so it stops showing as live."""
        assert self.redis is not None
        period = self.settings.cluster.lease_seconds
        loop = asyncio.get_running_loop()
        suspects: dict[int, float] = {}
        while True:
            await asyncio.sleep(period)
            try:
                async with self.db.session() as session:
                    ids = await queries.live_stream_ids(session)
                alive = await streams_alive(self.redis, ids)
            except ClusterUnavailable:
                suspects.clear()  # unknown: start over once Redis answers
                continue
            except Exception:
                log.exception("looking for streams of dead origins failed")
                continue
            now = loop.time()
            suspects = {i: suspects.get(i, now) for i in ids if i not in alive}
            ripe = [i for i, seen in suspects.items() if now - seen >= period]
            if ripe:
                for i in ripe:
                    del suspects[i]
                async with self.db.session() as session:
                    orphans = await queries.take_streams(session, ripe)
                    await session.commit()
                self.broadcasts.recover(orphans)

    async def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await self.db.connect()
        self.uploader.start()
        try:  # said at once, not at the first upload; uploads are retried meanwhile
            await self.objects.check()
        except ObjectStoreError as exc:
            log.error("the object store does not answer as configured ([objects]): %s", exc)
        if self.node.takes_publishers and self.uploader.active:
            self._resend = asyncio.get_running_loop().create_task(publish_unsent(self.uploader))
        if self.node.takes_publishers:  # a web node (issue 15) runs no ingest, no transcoder
            # Streams a crash left open: out of LIVE before a publisher can come back,
            # recovered from the disk in the background.
            await self._recover_orphans()
            await self.ingest.start()
            if self.leases is not None:
                self.leases.start()
                self._reaper = asyncio.get_running_loop().create_task(self._reap_dead_rows())
        if self.mirror is not None:
            self.mirror.start()
        # rtmp_port: what ingest listens on, the OBS "Server" the dashboard shows.
        app = create_app(
            settings=self.settings,
            db=self.db,
            metrics=self.metrics,
            registry=self.registry,
            edges=self.broadcasts.edges,
            rtmp_port=self.rtmp_port,
            rtmps_port=self.ingest.tls_port or self.settings.rtmp.tls_port,
            restream_status=self.restream.status,
            restream_changed=self.restream.changed,
            node={
                "role": self.node.role,
                "node": self.node.node_id,
                "url": self.node.advertise_url,
            },
            counts=self.counts,
            objects=self.objects,
        )
        h = self.settings.http
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=h.keepalive_timeout)
        await self._runner.setup()
        aiohttp_factory: Callable[[], asyncio.Protocol] = self._runner.server  # type: ignore[assignment]
        # Every connection is accepted by the front, which admits it (connection caps) and
        # keeps the head deadline, then answers HLS itself or hands over to aiohttp.
        rejected = self.metrics.http_rejected
        self._front = front = HttpFront(
            app[HLS_KEY] if h.fast_path else None,
            aiohttp_factory,
            keepalive_timeout=h.keepalive_timeout,
            head_timeout=h.request_head_timeout,
            max_head=h.max_request_head,
            max_connections=h.max_connections,
            max_per_address=h.max_connections_per_address,
            on_reject=lambda reason: rejected.labels(reason).inc(),
        )
        self.metrics.http_connections.set_function(lambda: front.admission.total)
        loop = asyncio.get_running_loop()
        self._http = await loop.create_server(
            front.protocol, h.host, h.port, reuse_address=True, backlog=1024
        )
        log.info(
            "HTTP listening on %s:%d (role %s, node %s)",
            h.host,
            self.http_port,
            self.node.role,
            self.node.node_id,
        )
        if self.node.takes_publishers:
            self.restream.start()

    async def stop(self) -> None:
        await self.restream.stop()
        await self.ingest.stop()
        await stop_task(self._reaper)
        if self.leases is not None:
            await self.leases.stop()  # the ended streams' leases released
        if self.mirror is not None:
            await self.mirror.stop()
        await self.broadcasts.stop()
        try:
            await stop_task(self._resend)
        except Exception:  # stopping must go on; the next start sends them again
            log.exception("sending unsent recordings to the object store failed")
        await self.uploader.stop()  # what is not uploaded yet stays on disk (and is logged)
        if self._http is not None:
            self._http.close()  # no new connections; the open ones are closed below
        if self._runner is not None:
            await self._runner.cleanup()  # answers held requests, closes aiohttp's connections
        if self._front is not None:
            self._front.close()
        await self.db.dispose()
        if self.redis is not None:
            await self.redis.aclose()


async def serve(settings: Settings) -> None:
    server = Server(settings)
    await server.start()
    # Everything made at start-up (modules, the web app, templates, ORM metadata) lives as long
    # as the process: keep it out of the cyclic collector's scans. A full collection over it
    # took ~80 ms, a pause that landed straight on 1000 viewers' part delivery.
    gc.collect()
    gc.freeze()
    # What is made while serving (sockets, requests, frames in flight) mostly dies within a
    # second: a larger young generation lets it die there instead of being promoted and then
    # scanned by full collections that pause every room (see memory.gc_young_threshold).
    memory.young_generation(settings.memory.gc_young_threshold)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # SIGHUP: read the RTMPS certificate again (a renewed one), without dropping anyone.
    loop.add_signal_handler(signal.SIGHUP, server.ingest.reload_tls)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await server.stop()


def raise_open_file_limit(settings: Settings) -> None:
    """Let the connection caps, not the open-file limit, decide who is refused.

    systemd and most shells start services with a soft limit of 1024 descriptors, well under
    ``http.max_connections`` + ``rtmp.max_connections``: past it, accept() fails for everyone
    instead of the flooding address being refused. The soft limit may rise to the hard one.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Sockets, plus files, the database and the transcoders' pipes.
    wanted = settings.http.max_connections + settings.rtmp.max_connections + 1024
    if hard != resource.RLIM_INFINITY and hard < wanted:
        log.warning(
            "open-file limit %d is below the %d the connection caps need; raise "
            "LimitNOFILE (systemd) or ulimit -n, or lower http.max_connections",
            hard,
            wanted,
        )
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log.level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    memory.limit_arenas(settings.memory.malloc_arena_max)  # before any thread starts
    raise_open_file_limit(settings)
    try:
        import uvloop  # noqa: PLC0415 - optional at run time, see the except below
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay runnable without it
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
