"""The background sender: posts due deliveries, records each attempt, retries with backoff.

Deliveries are rows (``storage.webhooks``), so the sender holds no queue of its own: it claims
what is due, at most ``webhooks.max_concurrent`` at a time, and sleeps until woken (a delivery
queued here, one finished, a retry's time come) or ``webhooks.poll_interval`` passes (work
queued by another process, or left due by a restart). Each attempt is bounded in time
(``webhooks.timeout``, connect to answer) and in what it reads (``max_response_bytes``);
redirects are not followed (a 3xx is a failed attempt, the URL is the creator's to fix).

Delivery is at least once: ``stop`` cancels the attempts in flight and gives their claims back
uncounted, so one the receiver already got is sent again by the next start (same
``X-AeThex-Delivery`` id, which receivers use to ignore repeats).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from mediaserver.settings import WebhookSettings
from mediaserver.tasks import stop_tasks
from storage import Database
from storage import webhooks as store
from storage.models import utcnow

from .addresses import GuardedResolver, RefusedDestination, check_host
from .metrics import WebhookMetrics
from .signing import body_of, headers_of

log = logging.getLogger(__name__)

# A claim outlives the attempt's own deadline by this much before another sender may retake it.
LEASE_MARGIN = 30.0
PRUNE_EVERY = 3600.0


class WebhookSender:
    def __init__(
        self, settings: WebhookSettings, db: Database, metrics: WebhookMetrics | None = None
    ) -> None:
        self.ws = settings
        self.db = db
        self.metrics = metrics or WebhookMetrics(None)
        self._wake = asyncio.Event()
        self._inflight: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._last_prune = 0.0

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.ws.max_concurrent,
            resolver=None if self.ws.allow_private_addresses else GuardedResolver(),
        )
        self._http = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.ws.timeout),
            trust_env=False,  # no proxy from the environment: we checked where this goes
            auto_decompress=False,
        )
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        unfinished = set(self._inflight)
        await stop_tasks(tasks)
        self._loop_task = None
        if unfinished:
            try:
                async with self.db.session() as session:
                    await store.release(session, unfinished, utcnow())
                    await session.commit()
            except Exception:  # the leases run out instead
                log.exception("webhooks: could not release %d claims", len(unfinished))
        if self._http is not None:
            await self._http.close()
            self._http = None

    def wake(self) -> None:
        """Look for due deliveries now (one was queued or became due)."""
        self._wake.set()

    def _wake_in(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(timer)
            self._wake.set()

        timer = loop.call_later(max(0.0, seconds), fire)
        self._timers.add(timer)

    async def _run(self) -> None:
        while True:
            try:
                await self.dispatch()
                await self._prune()
            except Exception:
                log.exception("webhooks: dispatch failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ws.poll_interval):
                    await self._wake.wait()
            self._wake.clear()

    async def dispatch(self) -> None:
        free = self.ws.max_concurrent - len(self._inflight)
        if free <= 0:
            return
        async with self.db.session() as session:
            due = await store.claim_due(
                session,
                utcnow(),
                limit=free,
                lease=self.ws.timeout + LEASE_MARGIN,
                skip=self._inflight,
            )
            if due:  # nearly every look finds nothing: then there is nothing to commit
                await session.commit()
        for delivery in due:
            self._inflight.add(delivery.id)
            self.metrics.in_flight.inc()
            task = asyncio.get_running_loop().create_task(self._deliver(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _prune(self) -> None:
        now = time.monotonic()
        if self._last_prune and now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        async with self.db.session() as session:
            removed = await store.prune_deliveries(
                session, utcnow() - timedelta(days=self.ws.retention_days)
            )
            await session.commit()
        if removed:
            log.info("webhooks: pruned %d old deliveries", removed)

    async def _deliver(self, delivery: store.DueDelivery) -> None:
        try:
            ok, code, error = await self.attempt(delivery)
            async with self.db.session() as session:
                row = await store.record_attempt(
                    session,
                    delivery.id,
                    ok=ok,
                    status_code=code,
                    error=error,
                    now=utcnow(),
                    max_attempts=self.ws.max_attempts,
                    backoff_base=self.ws.backoff_base,
                    backoff_max=self.ws.backoff_max,
                )
                await session.commit()
            if row is not None:
                outcome = "retry" if row.status == "pending" else row.status
                self.metrics.attempts.labels(outcome).inc()
            if row is not None and row.status == "pending" and row.next_attempt_at is not None:
                self._wake_in((row.next_attempt_at - utcnow()).total_seconds())
            if not ok:
                log.info(
                    "webhooks: delivery %d (%s) attempt %d failed: %s",
                    delivery.id,
                    delivery.event,
                    delivery.attempts + 1,
                    error,
                )
        except Exception:
            # The claim's lease runs out and the delivery is tried again.
            log.exception("webhooks: delivery %d could not be recorded", delivery.id)
        finally:
            self._inflight.discard(delivery.id)
            self.metrics.in_flight.dec()
            self._wake.set()  # a slot is free: more may be due

    async def attempt(self, delivery: store.DueDelivery) -> tuple[bool, int | None, str | None]:
        """One POST: (succeeded, HTTP status or None, error or None). Never raises for the
        receiver's faults: they are the delivery's outcome."""
        assert self._http is not None
        body = body_of(delivery.id, delivery.event, delivery.payload, delivery.payload_format)
        headers = headers_of(delivery.id, delivery.event, delivery.secret, body, int(time.time()))
        timeout = self.ws.timeout
        try:
            async with asyncio.timeout(timeout):
                url = urlsplit(delivery.url)
                await check_host(
                    url.hostname or "",
                    url.port or 0,
                    allow_private=self.ws.allow_private_addresses,
                    within=timeout,
                )
                async with self._http.post(
                    delivery.url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    answer = await response.content.read(self.ws.max_response_bytes)
                    if 200 <= response.status < 300:
                        return True, response.status, None
                    text = answer.decode("utf-8", "replace").strip()
                    return False, response.status, f"HTTP {response.status} {text}".strip()
        except TimeoutError:
            return False, None, f"no answer within {timeout:g} s"
        except RefusedDestination as exc:
            return False, None, str(exc)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedDestination):
                return False, None, str(exc.os_error)
            return False, None, f"could not connect: {exc.os_error.strerror or exc.os_error}"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return False, None, f"{type(exc).__name__}: {exc}"[: store.ERROR_COLUMN_LENGTH]


# The process's sender, for the areas's handlers (a resend wakes it).
SENDER_KEY: web.AppKey[WebhookSender] = web.AppKey("webhook_sender")
