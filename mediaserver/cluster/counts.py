"""Counters every node of a cluster shares through Redis (issue 15): viewer counts, chat rate
limits and slow mode, failed logins and who is in each chat room.

One node (no ``cluster.redis_url``) never builds this: its counters stay in memory, in the
code paths they always had. With Redis, each web-facing area asks a ``ClusterCounts`` first and
keeps its in-memory counter as the fallback: a Redis error raises ``CountsUnavailable`` here
(counted in ``aethex_cluster_redis_errors_total{what}`` and logged, at most once per
``LOG_EVERY`` seconds per purpose), and the caller answers from what it knows locally, never
with a 500. For ``BACKOFF`` seconds after a failure every call falls back at once, so a Redis
that hangs costs its timeout once a second, not on every message or login.

Key layout (every key starts with ``aethex:``; one Redis, not Redis Cluster: the scripts
compute key names, which Redis Cluster would refuse):

* Viewers: ``aethex:viewers:{slug}:{node}`` holds the number of players this node counted for
  the channel, with a TTL of ``cluster.counts_ttl``, rewritten at every recount
  (``hls.viewer_update_interval``); ``aethex:viewers:{slug}`` is the set of nodes that
  reported (its TTL only ever extended, so it outlives every member's key). The total is the
  sum of the members' keys that still exist (one script, no SCAN):
  a node that dies stops refreshing its key and drops out of every total within the TTL, and
  the reader removes it from the set. A node whose count fell to 0 deletes its key.
* Chat send limits, per channel and user: ``aethex:chatlimit:sent:{channel}:{user}`` counts
  accepted messages in a fixed window (INCR, PEXPIRE on the first), and past
  ``chat.rate_limit_messages`` the user is muted by ``aethex:chatlimit:mute:...`` (SET PX
  ``chat.mute_seconds``); slow mode is ``aethex:chatlimit:slow:...`` set with PX of the room's
  slow-mode seconds by an accepted message. All of it in one script, so two messages sent to
  two nodes at once are ordered by Redis like two messages to one node.
* Failed logins (and sign-ups per address): ``aethex:login:{key}`` is a sorted set of failure
  times (Redis's own clock, so nodes' clocks do not matter) trimmed to the window and to the
  limit, expiring with the window: the same sliding window as the in-memory limiter.
* Presence: ``aethex:presence:{slug}:{node}`` is a hash user id -> the user's public JSON of
  the users with a socket on that node, with a TTL of ``cluster.counts_ttl`` refreshed every
  ``cluster.counts_refresh``; ``aethex:presence:{slug}`` is the set of nodes with a hash. A
  room's users are the union of the live hashes; a dead node's hash expires and the other nodes'
  next refresh tells their sockets those users left.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

# Seconds between two log lines about the same kind of failure (every failure is counted).
LOG_EVERY = 30.0
# After a failure, calls within this many seconds do not ask Redis but fall back at once: a
# Redis that hangs would otherwise add its timeout to every chat message and login.
BACKOFF = 1.0


class CountsUnavailable(Exception):
    """Redis could not answer; the caller falls back to its local counter."""


_VIEWERS = """
local node, ttl, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local i = 4
for _ = 1, n do
  local set, count = 'aethex:viewers:' .. ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  if count > 0 then
    redis.call('SET', set .. ':' .. node, count, 'PX', ttl)
    redis.call('SADD', set, node)
    if redis.call('PTTL', set) < ttl then redis.call('PEXPIRE', set, ttl) end
  else
    redis.call('DEL', set .. ':' .. node)
    redis.call('SREM', set, node)
  end
end
local out = {}
while i <= #ARGV do
  local set = 'aethex:viewers:' .. ARGV[i]
  i = i + 1
  local total = 0
  for _, member in ipairs(redis.call('SMEMBERS', set)) do
    local v = redis.call('GET', set .. ':' .. member)
    if v then total = total + tonumber(v) else redis.call('SREM', set, member) end
  end
  out[#out + 1] = total
end
return out
"""

# KEYS: slow, mute, sent. ARGV: slow ms (0: off), messages per window, window ms, mute ms.
_CHAT = """
local slow, limit, window, mute = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
if slow > 0 then
  local t = redis.call('PTTL', KEYS[1])
  if t > 0 then return {'slow_mode', t} end
end
local m = redis.call('PTTL', KEYS[2])
if m > 0 then return {'muted', m} end
local n = redis.call('INCR', KEYS[3])
if n == 1 then redis.call('PEXPIRE', KEYS[3], window) end
if n > limit then
  redis.call('SET', KEYS[2], '1', 'PX', mute)
  redis.call('DEL', KEYS[3])
  return {'rate_limited', mute}
end
if slow > 0 then redis.call('SET', KEYS[1], '1', 'PX', slow) end
return {'ok', 0}
"""

# KEYS: the limits' keys. ARGV: window ms, then each key's maximum. Returns {index, ms} of the
# first limit reached (index from 1), or {0, 0}.
_LOGIN_CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local n = redis.call('ZCARD', key)
  local max = tonumber(ARGV[i + 1])
  if n >= max then
    local oldest = redis.call('ZRANGE', key, n - max, n - max, 'WITHSCORES')
    return {i, tonumber(oldest[2]) + window - now}
  end
end
return {0, 0}
"""

# KEYS: the limits' keys. ARGV: window ms, a unique member, then each key's maximum.
_LOGIN_FAIL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  redis.call('ZREMRANGEBYRANK', key, 0, -1 - tonumber(ARGV[i + 2]))
  redis.call('PEXPIRE', key, window)
end
return 0
"""

# ARGV: node, ttl ms, then per room: slug, n, then n pairs of user id, public JSON. Replaces
# this node's hash of each room and refreshes its TTL.
_PRESENCE_PUT = """
local node, ttl = ARGV[1], tonumber(ARGV[2])
local i = 3
while i <= #ARGV do
  local set, n = 'aethex:presence:' .. ARGV[i], tonumber(ARGV[i + 1])
  local hash = set .. ':' .. node
  i = i + 2
  redis.call('DEL', hash)
  if n > 0 then
    for _ = 1, n do
      redis.call('HSET', hash, ARGV[i], ARGV[i + 1])
      i = i + 2
    end
    redis.call('PEXPIRE', hash, ttl)
    redis.call('SADD', set, node)
    if redis.call('PTTL', set) < ttl then redis.call('PEXPIRE', set, ttl) end
  else
    redis.call('SREM', set, node)
  end
end
return 0
"""

# ARGV: slugs. Returns per slug a flat list of user id, public JSON, one pair per live node
# holding the user (a user on two nodes comes twice).
_PRESENCE_READ = """
local out = {}
for _, slug in ipairs(ARGV) do
  local set = 'aethex:presence:' .. slug
  local room = {}
  for _, member in ipairs(redis.call('SMEMBERS', set)) do
    local pairs_ = redis.call('HGETALL', set .. ':' .. member)
    if #pairs_ == 0 then
      redis.call('SREM', set, member)
    else
      for j = 1, #pairs_ do room[#room + 1] = pairs_[j] end
    end
  end
  out[#out + 1] = room
end
return out
"""

# ARGV: node, ttl ms, slug, user id, public JSON ("" to remove the user).
_PRESENCE_ONE = """
local set = 'aethex:presence:' .. ARGV[3]
local hash = set .. ':' .. ARGV[1]
if ARGV[5] == '' then
  redis.call('HDEL', hash, ARGV[4])
else
  redis.call('HSET', hash, ARGV[4], ARGV[5])
  redis.call('PEXPIRE', hash, tonumber(ARGV[2]))
  redis.call('SADD', set, ARGV[1])
  if redis.call('PTTL', set) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', set, tonumber(ARGV[2]))
  end
end
return 0
"""

# A room's users as Redis knows them: user id -> (public info, number of nodes holding them).
RoomPresence = dict[int, tuple[dict[str, Any], int]]


class ClusterCounts:
    """The node's view of the shared counters (one per process, on the process's client)."""

    def __init__(self, redis: Any, node_id: str, ttl: float, errors: Any = None) -> None:
        self.redis = redis
        self.node_id = node_id
        self.ttl_ms = max(1, round(ttl * 1000))
        self._errors = errors  # the aethex_cluster_redis_errors counter (labels: what)
        self._logged: dict[str, float] = {}
        self._down_until = 0.0
        self._viewers = redis.register_script(_VIEWERS)
        self._chat = redis.register_script(_CHAT)
        self._login_check = redis.register_script(_LOGIN_CHECK)
        self._login_fail = redis.register_script(_LOGIN_FAIL)
        self._presence_put = redis.register_script(_PRESENCE_PUT)
        self._presence_read = redis.register_script(_PRESENCE_READ)
        self._presence_one = redis.register_script(_PRESENCE_ONE)

    async def _run(self, what: str, script: Any, keys: list[str], args: list[Any]) -> Any:
        self._check(what)
        try:
            return await script(keys=keys, args=args)
        except Exception as exc:  # any failure of Redis is "unknown now", never a crash
            self.failed(what, exc)
            raise CountsUnavailable(what) from exc

    def _check(self, what: str) -> None:
        """Fail fast (counted) within ``BACKOFF`` seconds of the last failure."""
        if time.monotonic() < self._down_until:
            if self._errors is not None:
                self._errors.labels(what).inc()
            raise CountsUnavailable(what)

    def failed(self, what: str, exc: BaseException) -> None:
        """Count (and now and then log) a failed call for ``what``."""
        if self._errors is not None:
            self._errors.labels(what).inc()
        now = time.monotonic()
        self._down_until = now + BACKOFF
        if now - self._logged.get(what, -LOG_EVERY) >= LOG_EVERY:
            self._logged[what] = now
            log.warning("cluster %s: Redis failed (%s); using this node's own state", what, exc)

    # -- viewers ---------------------------------------------------------------------------
    async def viewer_totals(self, local: Mapping[str, int], read: Iterable[str]) -> dict[str, int]:
        """Store this node's counts (``local``: slug -> players here, 0 = none any more) and
        return the cluster's totals of ``read`` and of every slug in ``local``."""
        slugs = list(dict.fromkeys([*local, *read]))
        args: list[Any] = [self.node_id, self.ttl_ms, len(local)]
        for slug, count in local.items():
            args += [slug, count]
        totals = await self._run("viewers", self._viewers, [], args + slugs)
        return {slug: int(n) for slug, n in zip(slugs, totals, strict=True)}

    # -- chat ------------------------------------------------------------------------------
    async def chat_admit(
        self,
        channel_id: int,
        user_id: int,
        slow_seconds: float,
        messages: int,
        window: float,
        mute: float,
    ) -> tuple[str, float]:
        """Count one message of ``user_id`` in ``channel_id``: ("ok", 0), or why it is refused
        ("slow_mode", "muted", "rate_limited") and the seconds until it may send again."""
        who = f"{channel_id}:{user_id}"
        keys = [f"aethex:chatlimit:{part}:{who}" for part in ("slow", "mute", "sent")]
        args = [round(slow_seconds * 1000), messages, round(window * 1000), round(mute * 1000)]
        verdict, ms = await self._run("chat_limits", self._chat, keys, args)
        return str(verdict), int(ms) / 1000

    # -- failed logins ---------------------------------------------------------------------
    async def login_retry_after(
        self, limits: list[tuple[str, int]], window: float
    ) -> tuple[int, float] | None:
        """The index of the first (key, max failures) limit reached and the seconds until it
        frees up, or None."""
        keys = [f"aethex:login:{key}" for key, _ in limits]
        args = [round(window * 1000)] + [n for _, n in limits]
        index, ms = await self._run("logins", self._login_check, keys, args)
        if not int(index):
            return None
        return int(index) - 1, int(ms) / 1000

    async def login_failure(self, limits: list[tuple[str, int]], window: float) -> None:
        keys = [f"aethex:login:{key}" for key, _ in limits]
        member = f"{self.node_id}:{time.time_ns()}"
        args = [round(window * 1000), member] + [n for _, n in limits]
        await self._run("logins", self._login_fail, keys, args)

    async def login_clear(self, key: str) -> None:
        self._check("logins")
        try:
            await self.redis.delete(f"aethex:login:{key}")
        except Exception as exc:
            self.failed("logins", exc)
            raise CountsUnavailable("logins") from exc

    # -- presence --------------------------------------------------------------------------
    async def presence_change(self, slug: str, user: dict[str, Any], here: bool) -> None:
        """``user`` has a socket in ``slug`` on this node now (``here``), or no more."""
        body = json.dumps(user, separators=(",", ":")) if here else ""
        args = [self.node_id, self.ttl_ms, slug, user["id"], body]
        await self._run("presence", self._presence_one, [], args)

    async def presence_put(self, rooms: Mapping[str, Iterable[dict[str, Any]]]) -> None:
        """This node's users of each room, replacing what it stored, with a fresh TTL."""
        args: list[Any] = [self.node_id, self.ttl_ms]
        for slug, users in rooms.items():
            flat: list[Any] = []
            for user in users:
                flat += [user["id"], json.dumps(user, separators=(",", ":"))]
            args += [slug, len(flat) // 2, *flat]
        if len(args) > 2:
            await self._run("presence", self._presence_put, [], args)

    async def presence_read(self, slugs: list[str]) -> dict[str, RoomPresence]:
        """Who is in each room on any live node."""
        if not slugs:
            return {}
        rooms = await self._run("presence", self._presence_read, [], list(slugs))
        out: dict[str, RoomPresence] = {}
        for slug, flat in zip(slugs, rooms, strict=True):
            room: RoomPresence = {}
            for uid_text, body in zip(flat[::2], flat[1::2], strict=True):
                uid = int(uid_text)
                held = room.get(uid)
                room[uid] = (held[0] if held else json.loads(body), (held[1] if held else 0) + 1)
            out[slug] = room
        return out
