"""Wires storage, the live registry, ingest and the web app into one process."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import datetime, timezone

from aiohttp import web

from mediaserver.broadcast import Broadcasts
from mediaserver.ingest import IngestServer
from mediaserver.live import LiveRegistry
from mediaserver.metrics import Metrics
from mediaserver.settings import Settings
from storage import Database, queries

log = logging.getLogger("aethex")


class Server:
    """Everything ``aethex serve`` runs; tests start one in-process on free ports."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.registry = LiveRegistry(
            settings.live.consumer_queue_size,
            on_drop=lambda ch, consumer, n: self.metrics.live_dropped.labels(ch, consumer).inc(n))
        self.db = Database(settings.effective_database_url)
        self.ingest = IngestServer(settings, self.db, self.registry, self.metrics)
        self.broadcasts = Broadcasts(settings, self.db, self.registry, self.metrics)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def http_port(self) -> int:
        assert self._runner is not None
        return self._runner.addresses[0][1]

    @property
    def rtmp_port(self) -> int:
        return self.ingest.port

    async def start(self) -> None:
        from webapp import create_app

        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await self.db.connect()
        async with self.db.session() as session:
            closed = await queries.close_orphaned_streams(session, datetime.now(timezone.utc))
            await session.commit()
        if closed:
            log.warning("closed %d stream(s) left live by an earlier run", closed)
        await self.ingest.start()
        app = create_app(settings=self.settings, db=self.db, metrics=self.metrics,
                         registry=self.registry, edges=self.broadcasts.edges)
        from webapp.channels import RTMP_PORT_KEY

        app[RTMP_PORT_KEY] = self.rtmp_port  # the OBS "Server" shown on the dashboard
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        h = self.settings.http
        self._site = web.TCPSite(self._runner, h.host, h.port, reuse_address=True)
        await self._site.start()
        log.info("HTTP listening on %s:%d", h.host, self.http_port)

    async def stop(self) -> None:
        await self.ingest.stop()
        await self.broadcasts.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.db.dispose()


async def serve(settings: Settings) -> None:
    server = Server(settings)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await server.stop()


def run(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log.level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay runnable without it
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
