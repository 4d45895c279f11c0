"""Channel leases in Redis: which origin a live channel is on, so one publisher per channel
holds across every origin of a cluster (issue 15).

The origin whose ingest accepted a publisher's key claims the channel: ``aethex:lease:{id}``
holds ``{"node", "url", "slug"}`` and ``aethex:origin:{slug}`` the origin's advertise URL, both
with a TTL of ``cluster.lease_seconds``, renewed every ``cluster.renew_interval`` while live and
deleted when the stream ends. Claim, renewal and release are Lua scripts comparing the value, so
only the holder extends or removes its lease, and a claim is atomic (set-if-absent).

A lease whose holder died expires, and the next claim (the encoder reconnecting to another
origin) takes it. A Redis that restarted empty loses every lease: each renewal that finds its
key gone sets it again (if nobody took the channel meanwhile), so leases come back within one
renewal interval; a lease found held by another node ends the local stream.

Redis being unreachable is never a crash: a claim then fails with ``ClusterUnavailable`` within
``DEADLINE`` seconds (ingest refuses the publisher clearly), and a failed renewal keeps the
local stream going (it is counted and retried at the next interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.exceptions import RedisError

from mediaserver.cluster.node import NodeIdentity
from mediaserver.cluster.redis import SOCKET_TIMEOUT
from mediaserver.tasks import stop_tasks

log = logging.getLogger(__name__)

T = TypeVar("T")

LEASE_PREFIX = "aethex:lease:"
ORIGIN_PREFIX = "aethex:origin:"
# Set when a creator ends a stream: no origin takes the channel until it expires.
COOLDOWN_PREFIX = "aethex:cooldown:"
# A node's control channel (Redis pub/sub): another node asks it to end a stream it ingests.
CONTROL_PREFIX = "aethex:control:"
# aethex:stream:{stream_id} = the node ingesting that stream row, renewed with the lease and
# left to expire after it: a LIVE row without it belongs to an origin that died.
STREAM_PREFIX = "aethex:stream:"
# The longest a publisher's claim (or a release at shutdown) waits on Redis before it is given
# up: a connect timeout plus a reply, so a Redis that is down is a refusal in seconds, not a hang.
DEADLINE = SOCKET_TIMEOUT + 1.0


def lease_key(channel_id: int) -> str:
    return f"{LEASE_PREFIX}{channel_id}"


def origin_key(slug: str) -> str:
    return f"{ORIGIN_PREFIX}{slug}"


def cooldown_key(channel_id: int) -> str:
    return f"{COOLDOWN_PREFIX}{channel_id}"


def stream_key(stream_id: int) -> str:
    return f"{STREAM_PREFIX}{stream_id}"


# KEYS: lease, origin, cooldown, stream. ARGV: lease value, origin URL, TTL in ms, "1" to refuse
# a channel in its ended-by-creator cooldown (a new claim; not a renewal), the node id to mark
# the stream row with ("" before the row exists).
# 1: ours and extended; 2: it was free and is ours now; 0: another holder has it; -1: cooldown.
_CLAIM = """
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  return -1
end
local current = redis.call('GET', KEYS[1])
local result = 1
if current == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  result = 2
elseif current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if ARGV[5] ~= '' then
  redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[3])
end
return result
"""

# KEYS: lease, origin. ARGV: lease value, origin URL. 1: deleted; 0: not ours (left alone).
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
end
return 1
"""


class ClusterUnavailable(Exception):
    """Redis did not answer in time (or refused): the cluster's state is unknown right now."""


class EndedByCreator(Exception):
    """The channel's creator ended its stream a moment ago (on any node): it waits out
    ``rtmp.ended_cooldown`` before a publisher may take it again."""


@dataclass(frozen=True)
class LeaseInfo:
    """Who holds a channel: the node's id, its advertise URL and the channel's slug."""

    node: str
    url: str
    slug: str


def lease_value(node: NodeIdentity, slug: str) -> str:
    """The lease's value, the same bytes for the same node and channel (compared by the
    scripts): JSON ``{"node", "url", "slug"}``."""
    return json.dumps(
        {"node": node.node_id, "url": node.advertise_url, "slug": slug}, separators=(",", ":")
    )


def parse_lease(value: str | None) -> LeaseInfo | None:
    if not value:
        return None
    try:
        data = json.loads(value)
        return LeaseInfo(str(data["node"]), str(data["url"]), str(data["slug"]))
    except (ValueError, KeyError, TypeError):
        return None


async def _bounded(op: Awaitable[T]) -> T:
    """``op`` within DEADLINE; any Redis failure or timeout becomes ClusterUnavailable."""
    try:
        async with asyncio.timeout(DEADLINE):
            return await op
    except (RedisError, OSError, TimeoutError) as exc:
        raise ClusterUnavailable(str(exc) or type(exc).__name__) from exc


async def find_origin(redis: Any, slug: str) -> str | None:
    """The advertise URL of the origin a slug is live on (``aethex:origin:{slug}``), None when
    no origin holds it. Raises ClusterUnavailable when Redis does not answer."""
    value = await _bounded(redis.get(origin_key(slug)))
    return str(value) if value else None


async def lease_holder(redis: Any, channel_id: int) -> LeaseInfo | None:
    """Who holds the channel's lease now, if anyone."""
    return parse_lease(await _bounded(redis.get(lease_key(channel_id))))


async def request_stop(redis: Any, channel_id: int, reason: str = "ended") -> bool:
    """Ask the origin holding the channel's lease to end its stream (the creator ended it on
    another node). True if that origin was listening."""
    holder = await lease_holder(redis, channel_id)
    if holder is None:
        return False
    message = json.dumps({"op": "stop", "channel_id": channel_id, "reason": reason})
    return bool(await _bounded(redis.publish(f"{CONTROL_PREFIX}{holder.node}", message)))


async def streams_alive(redis: Any, stream_ids: list[int]) -> set[int]:
    """Which of these stream rows an origin marks as its own now (``aethex:stream:{id}``)."""
    if not stream_ids:
        return set()
    values = await _bounded(redis.mget([stream_key(i) for i in stream_ids]))
    return {i for i, v in zip(stream_ids, values, strict=True) if v}


async def leased_channels(redis: Any) -> set[int]:
    """The ids of every channel some node holds a lease on (SCAN, not KEYS: Redis stays
    responsive however many there are)."""

    async def scan() -> set[int]:
        found: set[int] = set()
        async for key in redis.scan_iter(match=f"{LEASE_PREFIX}*", count=500):
            tail = str(key)[len(LEASE_PREFIX) :]
            if tail.isdigit():
                found.add(int(tail))
        return found

    return await _bounded(scan())


class ChannelLeases:
    """This origin's leases: claimed when a publisher is accepted, renewed while it is live,
    released when it stops. ``on_lost(channel_id)`` is called when a renewal finds another
    node holding a channel this node is live on (after a Redis restart, or a silent
    publisher's channel taken over by another origin): the local stream must stop."""

    def __init__(
        self,
        redis: Any,
        node: NodeIdentity,
        *,
        lease_seconds: float,
        renew_interval: float,
        on_error: Callable[[str], None] = lambda op: None,
        on_count: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.redis = redis
        self.node = node
        self.ttl_ms = max(1, round(lease_seconds * 1000))
        self.renew_interval = renew_interval
        self.on_lost: Callable[[int], None] = lambda channel_id: None
        # Whether a held channel's publisher is still sending: a silent one's lease is left to
        # expire, so its encoder reconnecting to another origin can take the channel over
        # (rtmp.takeover_after across origins); it is renewed again if the media comes back.
        self.should_renew: Callable[[int], bool] = lambda channel_id: True
        # Another node asks this one to end a channel's stream (``request_stop``).
        self.on_stop: Callable[[int, str], object] = lambda channel_id, reason: None
        self._on_error = on_error
        self._on_count = on_count
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)
        self.held: dict[int, str] = {}  # channel id -> slug
        self.streams: dict[int, int] = {}  # channel id -> the stream row live here
        # One lock per channel orders a claim against a release still on its way to Redis
        # (kept: one small object per channel that was ever live on this node).
        self._locks: dict[int, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._failing = False  # renewals are failing: log the first failure and the recovery

    def _lock(self, channel_id: int) -> asyncio.Lock:
        lock = self._locks.get(channel_id)
        if lock is None:
            lock = self._locks[channel_id] = asyncio.Lock()
        return lock

    def _run_claim(self, channel_id: int, slug: str, *, new: bool = False) -> Awaitable[int]:
        stream_id = self.streams.get(channel_id)
        return self._claim(
            keys=[
                lease_key(channel_id),
                origin_key(slug),
                cooldown_key(channel_id),
                stream_key(stream_id or 0),
            ],
            args=[
                lease_value(self.node, slug),
                self.node.advertise_url,
                self.ttl_ms,
                "1" if new else "0",
                self.node.node_id if stream_id else "",
            ],
        )

    async def claim(self, channel_id: int, slug: str) -> bool:
        """Take the channel for this node: True if it is ours now (it was free, or already
        ours), False if another node holds it. ClusterUnavailable if Redis does not answer,
        EndedByCreator if the channel is in its cooldown."""
        async with self._lock(channel_id):
            try:
                got = await _bounded(self._run_claim(channel_id, slug, new=True))
            except ClusterUnavailable:
                self._on_error("claim")
                raise
            if got == -1:
                raise EndedByCreator(slug)
            if got == 0:
                return False
            self.held[channel_id] = slug
            self._on_count(len(self.held))
            return True

    def attach(self, channel_id: int, stream_id: int) -> None:
        """The channel's stream row: marked as this node's (``aethex:stream:{id}``) from now
        on, with every renewal."""
        self.streams[channel_id] = stream_id
        slug = self.held.get(channel_id)
        if slug is None:
            return

        async def mark() -> None:
            # With the lease, by the renewal's script: the mark expires when the lease does.
            try:
                await _bounded(self._run_claim(channel_id, slug))
            except ClusterUnavailable:
                self._on_error("renew")  # the next renewal marks it

        self._spawn(mark())

    def set_cooldown(self, channel_id: int, seconds: float) -> None:
        """The creator ended the channel's stream: refuse it on every origin for ``seconds``."""
        if seconds <= 0:
            return

        async def put() -> None:
            try:
                ms = round(seconds * 1000)
                await _bounded(self.redis.set(cooldown_key(channel_id), "1", px=ms))
            except ClusterUnavailable as exc:
                self._on_error("cooldown")
                log.warning("cooldown of channel %d not shared (Redis: %s)", channel_id, exc)

        self._spawn(put())

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def release(self, channel_id: int) -> None:
        """The channel's stream ended here: stop renewing at once and delete the lease (if it
        is still ours) in the background."""
        self.streams.pop(channel_id, None)  # its mark expires after lease_seconds
        slug = self.held.pop(channel_id, None)
        if slug is None:
            return
        self._on_count(len(self.held))
        self._spawn(self._drop(channel_id, slug))

    async def _drop(self, channel_id: int, slug: str) -> None:
        async with self._lock(channel_id):
            if channel_id in self.held:  # claimed again here meanwhile: the lease is in use
                return
            try:
                await _bounded(
                    self._release(
                        keys=[lease_key(channel_id), origin_key(slug)],
                        args=[lease_value(self.node, slug), self.node.advertise_url],
                    )
                )
            except ClusterUnavailable as exc:
                # It expires by itself after lease_seconds.
                self._on_error("release")
                log.warning("lease of %s not released (Redis: %s); it will expire", slug, exc)

    async def renew(self) -> None:
        """Extend every lease this node holds; set again those Redis lost; report those
        another node holds now, the silent publishers' (left to expire) included."""
        channels: list[tuple[int, str]] = []
        silent: list[tuple[int, str]] = []
        for channel_id, slug in self.held.items():
            (channels if self.should_renew(channel_id) else silent).append((channel_id, slug))
        if silent:
            await self._check_silent(silent)
        if not channels:
            return
        try:
            results = await _bounded(
                asyncio.gather(*(self._run_claim(cid, slug) for cid, slug in channels))
            )
        except ClusterUnavailable as exc:
            self._on_error("renew")
            if not self._failing:
                log.warning(
                    "lease renewal failed (Redis: %s); retrying every %.1f s",
                    exc,
                    self.renew_interval,
                )
            self._failing = True
            return
        if self._failing:
            log.info("lease renewal works again (Redis is back)")
            self._failing = False
        for (channel_id, slug), result in zip(channels, results, strict=True):
            if self.held.get(channel_id) != slug:
                continue  # released while renewing
            if result == 2:
                log.warning("lease of %s was gone from Redis: registered again", slug)
            elif result == 0:
                self._lost(channel_id, slug)

    def _lost(self, channel_id: int, slug: str) -> None:
        log.warning("lease of %s is held by another node now: stopping here", slug)
        del self.held[channel_id]
        self.streams.pop(channel_id, None)
        self._on_count(len(self.held))
        self.on_lost(channel_id)

    async def _check_silent(self, channels: list[tuple[int, str]]) -> None:
        """A silent publisher's channel taken over by another origin (its encoder came back
        there): its stream here ends now, not when the old connection wakes or times out, so
        this node stops offering the stalled broadcast (its HLS then goes to the new owner)."""
        try:
            holders = await _bounded(
                asyncio.gather(*(self.redis.get(lease_key(cid)) for cid, _ in channels))
            )
        except ClusterUnavailable:
            self._on_error("renew")
            return
        for (channel_id, slug), value in zip(channels, holders, strict=True):
            holder = parse_lease(value)
            if holder is None or holder.node == self.node.node_id:
                continue  # not taken (yet), or still ours
            if self.held.get(channel_id) == slug:
                self._lost(channel_id, slug)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.renew_interval)
            try:
                await self.renew()
            except Exception:  # never let the renewer die: the leases would all expire
                self._on_error("renew")
                log.exception("lease renewal failed")

    async def _listen_forever(self) -> None:
        """This node's control channel: requests of other nodes to end a stream here. The
        subscription is made again after Redis restarts."""
        channel = f"{CONTROL_PREFIX}{self.node.node_id}"
        failing = False
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await _bounded(pubsub.subscribe(channel))
                if failing:
                    log.info("control channel %s subscribed again", channel)
                    failing = False
                while True:
                    message = await _bounded(pubsub.get_message(timeout=1.0))
                    if message is not None and message.get("type") == "message":
                        self._control(message.get("data"))
            except Exception as exc:  # Redis went away (or the client broke): subscribe again
                if not failing:
                    log.warning("control channel %s: %s; retrying", channel, exc)
                failing = True
                await asyncio.sleep(self.renew_interval)
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(DEADLINE):
                        await pubsub.aclose()

    def _control(self, data: Any) -> None:
        try:
            request = json.loads(data)
            channel_id, reason = int(request["channel_id"]), str(request.get("reason", "ended"))
        except (ValueError, KeyError, TypeError):
            log.warning("control channel: ignored %r", data)
            return
        if request.get("op") == "stop":
            self.on_stop(channel_id, reason[:32])

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._renewer = loop.create_task(self._renew_forever())
        self._listener = loop.create_task(self._listen_forever())

    async def stop(self) -> None:
        """Stop renewing; wait (bounded) for the releases still on their way to Redis."""
        await stop_tasks([t for t in (self._renewer, self._listener) if t is not None])
        self._renewer = self._listener = None
        for channel_id in list(self.held):
            self.release(channel_id)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=DEADLINE + 1)
