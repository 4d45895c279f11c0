"""The process's one Redis client for cluster coordination (leases, routing, counts).

One client (with its connection pool) per process, made from ``cluster.redis_url``; ``None``
when the setting is empty (a single node needs no Redis). Callers must treat Redis errors as
"the cluster state is unknown right now", never as a crash: Redis may restart under us.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from mediaserver.settings import Settings

# Seconds to connect to Redis and to wait for one reply: a Redis that is down must turn into a
# clear refusal quickly, not hang a publisher's handshake.
SOCKET_TIMEOUT = 2.0


def make_redis(settings: Settings) -> Any | None:
    """A client for ``cluster.redis_url`` (it connects lazily on first use), or None."""
    url = settings.cluster.redis_url
    if not url:
        return None
    return aioredis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        health_check_interval=5,
        decode_responses=True,
        # One immediate retry: a pooled connection a Redis restart closed is replaced at once,
        # and a Redis that is down is an error at once. redis-py's default (three retries,
        # sleeping 1-10 s between them) kept a lease renewal retrying through a short outage,
        # so the renewal neither failed nor said so; every caller retries on its own schedule.
        retry=Retry(NoBackoff(), 1),
    )
