"""A reaction burst rides the chat room's next broadcast (issue 16): the room says when that
is (``Room.flush_at``) and the reactions publish just before it, so a tap waits at most one
chat tick instead of a reactions tick and then a chat tick. Loop-clock arithmetic only: the
timers themselves are not waited for."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mediaserver.settings import ReactionSettings
from webapp.chat.room import Room
from webapp.reactions.live import LEAD, ReactionRooms

TICK = 0.05


def make_room() -> Room:
    return Room(
        "r",
        tick=TICK,
        send_limit=1 << 20,
        big_room=100,
        presence_interval=1.0,
        on_empty=lambda room: None,
    )


async def test_a_busy_room_names_its_next_broadcast_an_idle_one_none() -> None:
    room = make_room()
    now = asyncio.get_running_loop().time()
    assert room.flush_at(now) is None  # never broadcast: an event would go out at once
    room._last_flush = now - 0.01  # broadcast 10 ms ago: the next is due 40 ms from now
    assert room.flush_at(now) == pytest.approx(now + 0.04)
    # the first broadcast at or after a later time: whole ticks after the last one
    assert room.flush_at(now + 0.06) == pytest.approx(now + 0.09)
    room._last_flush = now - 2 * TICK  # quiet for a tick: at once again
    assert room.flush_at(now) is None
    await room.stop()


class FakeChat:
    """Only what ReactionRooms asks of the chat service when it schedules a burst."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.published: list[tuple[str, list[dict[str, Any]]]] = []

    def flush_at(self, slug: str, earliest: float) -> float | None:
        return self.room.flush_at(earliest)

    async def publish(self, slug: str, events: list[dict[str, Any]]) -> None:
        self.published.append((slug, events))


@pytest.mark.parametrize("since_flush", [0.001, 0.02, 0.045])
async def test_a_burst_is_timed_just_before_the_rooms_broadcast(
    monkeypatch: pytest.MonkeyPatch, since_flush: float
) -> None:
    loop = asyncio.get_running_loop()
    room = make_room()
    reactions = ReactionRooms(ReactionSettings(tick=0.025), FakeChat(room), [])
    delays: list[float] = []
    monkeypatch.setattr(loop, "call_later", lambda delay, *a: delays.append(delay))
    now = loop.time()
    room._last_flush = now - since_flush
    reactions._schedule("r")
    next_broadcast = now - since_flush + TICK
    if next_broadcast - LEAD >= now:
        expected = next_broadcast - LEAD  # rides the coming broadcast
    else:
        expected = next_broadcast + TICK - LEAD  # too close: the one after
    # (the loop clock moved a little between our reading and the scheduler's)
    assert delays and abs(delays[0] - (expected - now)) < 0.002
    assert delays[0] <= TICK  # never more than a chat tick
    monkeypatch.undo()
    await room.stop()


async def test_a_burst_after_a_quiet_room_goes_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    room = make_room()
    reactions = ReactionRooms(ReactionSettings(tick=0.025), FakeChat(room), [])
    delays: list[float] = []
    monkeypatch.setattr(loop, "call_later", lambda delay, *a: delays.append(delay))
    reactions._schedule("r")
    assert delays == [0.0]
    monkeypatch.undo()
    await room.stop()
