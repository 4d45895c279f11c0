"""The lease logic of mediaserver/cluster/leases.py against a real redis-server: claim is
set-if-absent, only the holder renews or releases, an expired lease is taken over, a lease Redis
lost is registered again by the renewal, and a Redis that is down is a prompt, clear failure."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from mediaserver.cluster.leases import (
    DEADLINE,
    ChannelLeases,
    ClusterUnavailable,
    EndedByCreator,
    find_origin,
    lease_holder,
    leased_channels,
    request_stop,
)
from mediaserver.cluster.node import NodeIdentity

A = NodeIdentity("node-a", "http://a.test:8080", "origin")
B = NodeIdentity("node-b", "http://b.test:8080", "origin")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Any]:
    r = aioredis.from_url(
        redis_url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
    )
    try:
        yield r
    finally:
        await r.aclose()


def leases_for(
    client: Any, node: NodeIdentity, lease_seconds: float = 5.0, renew: float = 1.0
) -> ChannelLeases:
    return ChannelLeases(client, node, lease_seconds=lease_seconds, renew_interval=renew)


async def until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_claim_is_exclusive_and_names_the_origin(client: Any) -> None:
    a, b = leases_for(client, A), leases_for(client, B)
    assert await a.claim(7, "alpha") is True
    assert await b.claim(7, "alpha") is False
    assert await a.claim(7, "alpha") is True  # the holder claiming again keeps it
    assert json.loads(await client.get("aethex:lease:7")) == {
        "node": "node-a",
        "url": "http://a.test:8080",
        "slug": "alpha",
    }
    assert await find_origin(client, "alpha") == "http://a.test:8080"
    holder = await lease_holder(client, 7)
    assert holder is not None and holder.node == "node-a"
    ttl = await client.pttl("aethex:lease:7")
    assert 0 < ttl <= 5000 and 0 < await client.pttl("aethex:origin:alpha") <= 5000
    assert await leased_channels(client) == {7}
    assert a.held == {7: "alpha"} and b.held == {}


async def test_only_the_holder_renews_and_releases(client: Any) -> None:
    a, b = leases_for(client, A), leases_for(client, B)
    assert await a.claim(3, "beta")
    await client.pexpire("aethex:lease:3", 500)
    await a.renew()
    assert await client.pttl("aethex:lease:3") > 1000  # extended to lease_seconds again
    # B never held it: its release and renewal leave A's lease alone.
    b.held[3] = "beta"
    lost: list[int] = []
    b.on_lost = lost.append
    await b.renew()
    assert lost == [3] and b.held == {}
    b.held[3] = "beta"
    b.release(3)
    await b.stop()
    assert (await lease_holder(client, 3)).node == "node-a"  # type: ignore[union-attr]
    assert await find_origin(client, "beta") == "http://a.test:8080"
    # A's release deletes both keys.
    a.release(3)
    await a.stop()
    assert await client.get("aethex:lease:3") is None
    assert await client.get("aethex:origin:beta") is None


async def test_expired_lease_is_taken_over(client: Any) -> None:
    a = leases_for(client, A, lease_seconds=0.3, renew=0.1)
    b = leases_for(client, B)
    assert await a.claim(9, "gamma")
    assert await b.claim(9, "gamma") is False
    # A stops renewing (a crash): after lease_seconds, B's claim wins.
    assert await until(lambda: b.claim(9, "gamma"), timeout=5)
    assert (await lease_holder(client, 9)).node == "node-b"  # type: ignore[union-attr]
    assert await find_origin(client, "gamma") == "http://b.test:8080"
    # A's late release does not remove B's lease; A's renewal reports the loss.
    lost: list[int] = []
    a.on_lost = lost.append
    await a.renew()
    assert lost == [9]
    a.held[9] = "gamma"
    a.release(9)
    await a.stop()
    assert (await lease_holder(client, 9)).node == "node-b"  # type: ignore[union-attr]


async def test_simultaneous_claims_have_one_winner(client: Any) -> None:
    nodes = [
        leases_for(client, NodeIdentity(f"n{i}", f"http://n{i}.test", "origin")) for i in range(8)
    ]
    won = await asyncio.gather(*(n.claim(11, "delta") for n in nodes))
    assert sorted(won) == [False] * 7 + [True]


async def test_renewal_registers_a_lease_redis_lost(redis_server: Any, client: Any) -> None:
    a = leases_for(client, A, lease_seconds=5.0, renew=0.2)
    assert await a.claim(5, "eps")
    a.start()
    try:
        redis_server.restart()  # empty, and every pooled connection is broken
        started = time.monotonic()
        await until(lambda: _get(client, "aethex:lease:5"), timeout=5)
        assert time.monotonic() - started < 2.0
        assert await find_origin(client, "eps") == "http://a.test:8080"
    finally:
        await a.stop()


async def test_renewal_lost_to_another_holder_after_restart(redis_server: Any, client: Any) -> None:
    a = leases_for(client, A, lease_seconds=5.0, renew=0.2)
    b = leases_for(client, B)
    lost: list[int] = []
    a.on_lost = lost.append
    assert await a.claim(6, "zeta")
    redis_server.restart()
    # B claims the empty Redis before A's renewal: A must give the channel up.
    assert await until(lambda: _claims(b, 6, "zeta"), timeout=5)
    await a.renew()
    assert lost == [6] and a.held == {}
    assert (await lease_holder(client, 6)).node == "node-b"  # type: ignore[union-attr]


async def _claims(leases: ChannelLeases, channel_id: int, slug: str) -> bool:
    try:
        return await leases.claim(channel_id, slug)
    except ClusterUnavailable:
        return False


async def test_redis_down_is_a_prompt_clear_failure(redis_server: Any, client: Any) -> None:
    errors: list[str] = []
    a = ChannelLeases(client, A, lease_seconds=5, renew_interval=1, on_error=errors.append)
    assert await a.claim(1, "eta")
    redis_server.stop()
    started = time.monotonic()
    with pytest.raises(ClusterUnavailable):
        await a.claim(2, "theta")
    assert time.monotonic() - started <= DEADLINE + 0.5
    await a.renew()  # counted, not raised; the held lease stays held locally
    assert a.held == {1: "eta"} and errors == ["claim", "renew"]
    with pytest.raises(ClusterUnavailable):
        await find_origin(client, "eta")
    redis_server.start()
    await until(lambda: _renewed(a, client), timeout=5)


async def _renewed(leases: ChannelLeases, client: Any) -> bool:
    await leases.renew()
    return bool(await _get(client, "aethex:lease:1"))


async def _get(client: Any, key: str) -> str | None:
    """The key's value; None also while the client reconnects to a restarted Redis."""
    try:
        return await client.get(key)  # type: ignore[no-any-return]
    except Exception:
        return None


async def test_a_silent_publishers_lease_is_left_to_expire(client: Any) -> None:
    """Renewal extends a sending publisher's lease, a silent one's is not extended and expires,
    and the other node takes it. The lease is long (60 s) and the test shortens it in Redis
    itself, so nothing depends on how soon the renewer runs on a loaded machine: a 0.3 s lease
    expired there between two renewals (the event loop was not scheduled for that long)."""
    a = leases_for(client, A, lease_seconds=60.0, renew=0.05)
    b = leases_for(client, B)
    silent: set[int] = set()
    a.should_renew = lambda channel_id: channel_id not in silent
    lost: list[int] = []
    a.on_lost = lost.append
    rounds: list[int] = []
    renew = a.renew

    async def counted() -> None:
        await renew()
        rounds.append(1)

    a.renew = counted  # type: ignore[method-assign]
    assert await a.claim(12, "iota")
    key = "aethex:lease:12"
    a.start()
    try:
        # While the publisher sends, each renewal sets the lease's TTL back to lease_seconds.
        await client.pexpire(key, 30_000)
        await until(lambda: _pttl_above(client, key, 30_000), timeout=10)
        assert await b.claim(12, "iota") is False
        # The publisher went quiet: its lease is no longer extended, so a short remaining TTL
        # runs out (a renewal would set it back to 60 s and B could never claim) ...
        silent.add(12)
        seen = len(rounds)  # a round that began before that may still extend it: wait it out
        await until(lambda: _true(len(rounds) >= seen + 2), timeout=10)
        await client.pexpire(key, 200)
        # ... and B takes the channel.
        assert await until(lambda: b.claim(12, "iota"), timeout=10)
        silent.clear()  # A's publisher is back: A's renewal finds B and gives up
        await until(lambda: _true(bool(lost)), timeout=10)
        assert lost == [12] and a.held == {}
        assert (await lease_holder(client, 12)).node == "node-b"  # type: ignore[union-attr]
    finally:
        await a.stop()


async def _pttl_above(client: Any, key: str, ms: int) -> bool:
    return int(await client.pttl(key)) > ms


async def _true(value: bool) -> bool:
    return value


async def test_stop_requests_reach_the_holder_across_a_redis_restart(
    redis_server: Any, client: Any
) -> None:
    a = leases_for(client, A, lease_seconds=5.0, renew=0.2)
    stops: list[tuple[int, str]] = []
    a.on_stop = lambda channel_id, reason: stops.append((channel_id, reason))
    assert await request_stop(client, 21, "ended") is False  # nobody holds it
    assert await a.claim(21, "kappa")
    a.start()
    try:
        await until(lambda: request_stop(client, 21, "ended"), timeout=5)  # once subscribed
        await until(lambda: _true(bool(stops)), timeout=5)
        assert stops == [(21, "ended")], stops
        redis_server.restart()
        # The lease comes back with the renewal and the listener subscribes again.
        # (A request can land on the old subscription while it closes: ask until it is heard.)
        await until(lambda: _heard(client, 21, stops, 2), timeout=10)
        assert set(stops) == {(21, "ended")}, stops
        # A creator's cooldown refuses new claims on every node, not the holder's renewal.
        a.set_cooldown(22, 5)
        await until(lambda: _get(client, "aethex:cooldown:22"), timeout=5)
        b = leases_for(client, B)
        with pytest.raises(EndedByCreator):
            await b.claim(22, "lambda")
        assert b.held == {}
        await a.renew()
        assert a.held == {21: "kappa"}
    finally:
        await a.stop()


async def _heard(client: Any, channel_id: int, stops: list[Any], count: int) -> bool:
    try:
        await request_stop(client, channel_id, "ended")
    except ClusterUnavailable:
        return False
    await asyncio.sleep(0.2)
    return len(stops) >= count
