"""Turns what happens into deliveries: a stream starting or ending (the live registry of the
process that holds the publish) and a new follower (the follows area's listener hook).

Listeners only schedule a task, so going live never waits for a query, let alone a receiver:
the task reads what the payload needs, queues one delivery per matching endpoint in one
transaction, and wakes the sender. The payload is written once per event, as it was then.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

from mediaserver.live import LiveRegistry
from mediaserver.live.stream import LiveStream
from mediaserver.settings import Settings
from mediaserver.tasks import stop_tasks
from storage import Database
from storage import webhooks as store
from storage.models import utcnow

from ..keys import FollowChange
from .sender import WebhookSender

log = logging.getLogger(__name__)

# Seconds the app's stop waits for events still being queued (a few quick queries each).
STOP_WAIT = 5.0


def site_url(settings: Settings) -> str:
    """The site's address for links in payloads: ``http.public_url`` (set it), else a guess."""
    if settings.http.public_url:
        return settings.http.public_url.rstrip("/")
    host = settings.http.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    port = "" if settings.http.port == 80 else f":{settings.http.port}"
    return f"http://{host}{port}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class WebhookEvents:
    def __init__(
        self, settings: Settings, db: Database, registry: LiveRegistry, sender: WebhookSender
    ) -> None:
        self.settings = settings
        self.db = db
        self.registry = registry
        self.sender = sender
        self._tasks: set[asyncio.Task[None]] = set()
        self._listening = False

    def start(self) -> None:
        if not self._listening:  # the registry has no way to remove a listener
            self.registry.on_started(self._started)
            self.registry.on_ended(self._ended)
            self._listening = True

    async def stop(self) -> None:
        """Let queued events reach the database (they are quick) before the app closes it."""
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=STOP_WAIT)
            await stop_tasks(late)

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("webhooks: could not queue an event")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- listeners (called synchronously: schedule, never wait) -----------------------------

    def _started(self, stream: LiveStream) -> None:
        self._spawn(self._stream_event("stream.online", stream.channel_id, stream.stream_id))

    def _ended(self, stream: LiveStream) -> None:
        self._spawn(self._stream_event("stream.offline", stream.channel_id, stream.stream_id))

    def follow_changed(self, change: FollowChange) -> None:
        if change.following and change.changed:
            self._spawn(self._follow_event(change.channel_id, change.user_id))

    # -- the work ---------------------------------------------------------------------------

    def _channel(self, facts: store.ChannelFacts) -> dict[str, Any]:
        return {
            "id": facts.id,
            "slug": facts.slug,
            "name": facts.name,
            "url": f"{site_url(self.settings)}/streams/{facts.slug}",
        }

    async def _stream_event(self, event: str, channel_id: int, stream_id: int) -> None:
        async with self.db.session() as session:
            if not await store.has_webhooks_for(session, channel_id):
                return
            channel = await store.channel_facts(session, channel_id)
            stream = await store.stream_facts(session, stream_id)
            if channel is None:
                return
            payload: dict[str, Any] = {
                "created_at": utcnow().isoformat(),
                "channel": self._channel(channel),
                "stream": {
                    "id": stream_id,
                    "title": stream.title if stream else "",
                    "started_at": _iso(stream.started_at) if stream else None,
                    "ended_at": _iso(stream.ended_at) if stream else None,
                },
            }
            queued = await store.enqueue(session, channel_id, event, payload)
            await session.commit()
        if queued:
            self.sender.wake()

    async def _follow_event(self, channel_id: int, user_id: int) -> None:
        async with self.db.session() as session:
            if not await store.has_webhooks_for(session, channel_id):
                return
            channel = await store.channel_facts(session, channel_id)
            username = await store.username_of(session, user_id)
            if channel is None or username is None:
                return
            payload = {
                "created_at": utcnow().isoformat(),
                "channel": self._channel(channel),
                "follower": {"id": user_id, "username": username},
            }
            queued = await store.enqueue(session, channel_id, "channel.follow", payload)
            await session.commit()
        if queued:
            self.sender.wake()
