"""Emote files no row names any more are deleted here, every ``emotes.sweep_interval``.

Rows go without their files when their channel is deleted (the rows cascade; the channels area
knows nothing of emotes), or when a process stops between writing an upload's files and
committing its row. Files are written before their row is committed, so a file without a row
may be an upload in flight, on this node or another: a key is only deleted when two sweeps in
a row found it without a row (an interval apart, far longer than any upload).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from mediaserver.tasks import stop_task
from storage import emotes as store
from storage.objects import ObjectStoreError

from ..keys import DB_KEY, OBJECTS_KEY, SETTINGS_KEY
from . import pictures

log = logging.getLogger(__name__)


class OrphanSweep:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.suspects: set[str] = set()  # keys without a row at the last sweep
        self.removed = 0

    async def _keys_held(self) -> set[str]:
        names: set[str] = set()
        directory = pictures.emotes_dir(self.app)
        if await asyncio.to_thread(directory.is_dir):
            names |= set(await asyncio.to_thread(lambda: [p.name for p in directory.iterdir()]))
        objects = self.app[OBJECTS_KEY]
        if not objects.is_local:
            names |= {i.key.rsplit("/", 1)[-1] for i in await objects.list_prefix("emotes/")}
        return {n.split("-")[1] for n in names if pictures.NAME_RE.fullmatch(n)}

    async def run_once(self) -> int:
        """One sweep; how many emotes' files it deleted."""
        held = await self._keys_held()
        async with self.app[DB_KEY].session() as session:
            known = await store.all_file_keys(session)
        orphans = held - known
        doomed = orphans & self.suspects
        self.suspects = orphans - doomed
        for key in doomed:
            for animated in (False, True):
                pictures.remove(self.app, key, animated)
        self.removed += len(doomed)
        if doomed:
            log.info("emotes: deleted the files of %d emotes no row names", len(doomed))
        return len(doomed)

    async def loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.run_once()
            except (OSError, ObjectStoreError) as exc:
                log.warning("emotes: the orphan sweep failed (next one in %g s): %s", interval, exc)
            except Exception:
                log.exception("emotes: the orphan sweep failed")


def setup(app: web.Application) -> OrphanSweep:
    sweep = OrphanSweep(app)
    interval = app[SETTINGS_KEY].emotes.sweep_interval

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(sweep.loop(interval)) if interval else None
        yield
        if task is not None:
            await stop_task(task)

    app.cleanup_ctx.append(lifetime)
    return sweep
