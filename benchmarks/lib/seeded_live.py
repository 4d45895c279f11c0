"""``aethex serve`` with a seed's live channels made live inside it: the discovery benchmark's
server, run as ``python -m benchmarks.lib.seeded_live SEED.json READY_FILE``.

Why a launcher and not 1,000 RTMP publishers: a channel is live when the server's live registry
(in memory, filled by ingest when a publisher's key is accepted) holds a stream for it, beside
its LIVE stream row; the pages and the API read both. 1,000 publishers would need 1,000 encoders
on a 2-core machine, and a LIVE row written before start is taken for a crash's orphan and
closed. So this runs the server exactly as ``aethex serve`` does (same settings, uvloop, frozen
start-up heap), and after it starts it does for each live channel of the seed what ingest does
when a publish is accepted: a LIVE row (title, category, the seeded viewer count) and
``registry.start``. The streams carry no media: with transcoding off, nothing listens for it.
The tests do the same (``go_live`` in tests/integration/test_channels_api.py).

When that is done it writes READY_FILE (the benchmark waits for it, not for a time).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvloop
from sqlalchemy import insert, select

from benchmarks.lib.discovery_seed import Seed
from mediaserver import memory
from mediaserver.app import Server, raise_open_file_limit
from mediaserver.settings import load_settings
from storage import upgrade
from storage.models import Stream, StreamStatus, new_public_id


async def make_live(server: Server, seed: Seed) -> int:
    """LIVE rows and registry entries for the seed's live channels; returns how many."""
    now = datetime.now(UTC)
    started = {
        ch.channel_id: now - timedelta(minutes=5 + (ch.channel_id * 37) % 240) for ch in seed.live
    }
    async with server.db.session() as session:
        await session.execute(
            insert(Stream),
            [
                {
                    "public_id": new_public_id(),
                    "channel_id": ch.channel_id,
                    "title": ch.title[:140],
                    "category_id": ch.category_id,
                    "status": StreamStatus.LIVE,
                    "started_at": started[ch.channel_id],
                    "viewer_count": ch.viewers,
                    "peak_viewers": ch.viewers,
                }
                for ch in seed.live
            ],
        )
        await session.commit()
        ids = dict(
            (
                await session.execute(
                    select(Stream.channel_id, Stream.id).where(Stream.status == StreamStatus.LIVE)
                )
            ).all()
        )
    for ch in seed.live:
        server.registry.start(
            channel_id=ch.channel_id,
            slug=ch.slug,
            stream_id=ids[ch.channel_id],
            started_at=started[ch.channel_id],
        )
    return len(seed.live)


async def serve(seed: Seed, ready: Path) -> None:
    settings = load_settings(None)
    server = Server(settings)
    await server.start()
    await make_live(server, seed)
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Written whole, then renamed: the benchmark polls for the file and must never read it
    # half-written (it did, on a loaded machine: an empty file).
    part = ready.with_suffix(".part")
    part.write_text(str(len(server.registry)))
    part.replace(ready)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main() -> None:
    seed = Seed.load(Path(sys.argv[1]))
    ready = Path(sys.argv[2])
    settings = load_settings(None)
    logging.basicConfig(
        level=settings.log.level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    upgrade(settings.effective_database_url)
    memory.limit_arenas(settings.memory.malloc_arena_max)
    raise_open_file_limit(settings)
    uvloop.run(serve(seed, ready))


if __name__ == "__main__":
    main()
