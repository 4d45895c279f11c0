"""Polls in the chat room: the frames that start, vote in and end a poll, the running poll each
process keeps in memory, and the tally loop.

Where the truth is: the database (``storage.polls``). One vote per user is its primary key, so
it holds across reconnects and processes; tallies are counted there and published as totals
(``poll:tally``, per option), never as deltas, so a process that missed one event is right again
at the next. Each process counts the polls it took votes for at most once per
``polls.tally_interval`` (one query for all of them) and publishes one event per poll; with two
processes a room may get two tallies in an interval, and clients keep the larger count of each
option (counts only grow). The final result is counted when the poll ends and stored with it.

What each process remembers: every channel's running poll (with the last tally it saw), so a
joining socket's first frame shows it without a query. A channel is loaded once per process (on
its first join or frame); from then on the bus keeps it current: ``poll:start``, ``poll:tally``
and ``poll:end`` reach every process (``ChatService.bus_listeners``), whoever published them.

Ending: at its end time every process that knows the poll tries to end it; the conditional
update in ``storage.polls.end_poll`` lets exactly one succeed, and that one publishes
``poll:end``. The owner, a moderator or an admin may end it early (``poll:end`` frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from mediaserver.settings import PollSettings
from mediaserver.tasks import stop_task
from storage import Database
from storage import polls as store
from storage.chat import ChannelChatState
from storage.errors import ConflictError

from .votes import VoteFailed, VoteWriter, retrying

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


def error(code: str, message: str) -> dict[str, Any]:
    """A ``chat:error`` for the sender only (the chat's own error shape)."""
    return {"type": "chat:error", "code": code, "message": message}


@dataclass
class Running:
    """A running poll as this process knows it."""

    id: int
    question: str
    options: list[str]
    started_ms: int
    ends_ms: int
    counts: list[int] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return poll_document(
            self.id, self.question, self.options, self.counts, self.started_ms, self.ends_ms, None
        )


def poll_document(
    poll_id: int,
    question: str,
    options: list[str],
    counts: list[int],
    started_ms: int,
    ends_ms: int,
    ended_ms: int | None,
) -> dict[str, Any]:
    """A poll as events and the API show it."""
    return {
        "id": poll_id,
        "question": question,
        "options": [{"text": t, "votes": n} for t, n in zip(options, counts, strict=True)],
        "total": sum(counts),
        "started_at": iso(started_ms),
        "ends_at": iso(ends_ms),
        "ended_at": None if ended_ms is None else iso(ended_ms),
        "running": ended_ms is None,
    }


def row_document(row: store.PollRow) -> dict[str, Any]:
    counts = row.result if row.result is not None else [0] * len(row.options)
    return poll_document(
        row.id, row.question, row.options, counts, row.started_ms, row.ends_ms, row.ended_ms
    )


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


class PollRooms:
    """The polls of one server process (see the module's docstring)."""

    def __init__(self, settings: PollSettings, db: Database, chat: Any) -> None:
        self.ps = settings
        self.db = db
        self.chat = chat  # the ChatService (webapp.chat): publish, require_moderator, bus
        self.running: dict[str, Running | None] = {}  # slug -> running poll; loaded slugs only
        self._versions: dict[str, int] = {}  # bumped by bus events, so a slow load yields
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._dirty: dict[int, str] = {}  # poll id -> slug: took votes since the last tally
        self._ending: set[int] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.writer = VoteWriter(db, now_ms)  # group commit of votes

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.writer.start()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        await self.writer.stop()
        if self._task is not None:
            await stop_task(self._task)

    # -- memory ---------------------------------------------------------------------------
    async def ensure(self, state: ChannelChatState) -> Running | None:
        """The channel's running poll, loaded from the database once per process."""
        slug = state.slug
        if slug in self.running:
            return self.running[slug]
        pending = self._loading.get(slug)
        if pending is None:
            pending = self._loading[slug] = asyncio.get_running_loop().create_future()
            try:
                await self._load(state)
            finally:
                del self._loading[slug]
                pending.set_result(None)
        else:
            await pending
        return self.running.get(slug)

    async def _load(self, state: ChannelChatState) -> None:
        version = self._versions.get(state.slug, 0)
        async with self.db.session() as session:
            row = await store.running_poll(session, state.channel_id)
            counts = (
                (await store.tallies(session, {row.id: len(row.options)}))[row.id]
                if row is not None
                else []
            )
        if self._versions.get(state.slug, 0) != version:
            return  # a bus event told us something newer while we read
        self.running[state.slug] = (
            None
            if row is None
            else Running(row.id, row.question, row.options, row.started_ms, row.ends_ms, counts)
        )
        self._wake.set()  # an expired poll (the server was down) is ended by the loop

    def on_bus(self, slug: str, events: list[dict[str, Any]]) -> None:
        """Every process's view of the room's polls follows the events (bus listener)."""
        for event in events:
            kind = event.get("type")
            if kind == "poll:start":
                p = event["poll"]
                self._bump(slug)
                self.running[slug] = Running(
                    p["id"],
                    p["question"],
                    [o["text"] for o in p["options"]],
                    int(event["started_ms"]),
                    int(event["ends_ms"]),
                    [o["votes"] for o in p["options"]],
                )
                self._wake.set()
            elif kind == "poll:tally":
                poll = self.running.get(slug)
                if poll is not None and poll.id == event.get("id"):
                    counts = event.get("counts", [])
                    if len(counts) == len(poll.counts):
                        poll.counts = [max(a, b) for a, b in zip(poll.counts, counts, strict=True)]
            elif kind == "poll:end":
                poll = self.running.get(slug)
                if poll is None or poll.id == event["poll"]["id"]:
                    self._bump(slug)
                    self.running[slug] = None

    def _bump(self, slug: str) -> None:
        self._versions[slug] = self._versions.get(slug, 0) + 1

    async def join_events(self, state: ChannelChatState) -> list[dict[str, Any]]:
        poll = await self.ensure(state)
        if poll is None:
            return []
        return [self._start_event(poll)]

    @staticmethod
    def _start_event(poll: Running) -> dict[str, Any]:
        return {
            "type": "poll:start",
            "poll": poll.public(),
            "started_ms": poll.started_ms,
            "ends_ms": poll.ends_ms,
            "ends_in": max(0.0, round((poll.ends_ms - now_ms()) / 1000, 3)),
        }

    # -- frames ---------------------------------------------------------------------------
    def _parse_start(self, frame: dict[str, Any]) -> tuple[str, list[str], int]:
        ps = self.ps
        question = frame.get("question")
        if not isinstance(question, str) or not question.strip():
            raise ValueError("a poll needs a question")
        question = " ".join(question.split())
        if len(question) > ps.max_question:
            raise ValueError(f"the question is longer than {ps.max_question} characters")
        options = frame.get("options")
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise ValueError("options must be a list of 2 to 5 texts")
        cleaned = [" ".join(o.split()) for o in options]
        cleaned = [o for o in cleaned if o]
        if not 2 <= len(cleaned) <= 5:
            raise ValueError("a poll has 2 to 5 options")
        if any(len(o) > ps.max_option for o in cleaned):
            raise ValueError(f"an option is longer than {ps.max_option} characters")
        if len({o.casefold() for o in cleaned}) != len(cleaned):
            raise ValueError("two options are the same")
        duration = frame.get("duration", ps.default_duration)
        if isinstance(duration, bool) or not isinstance(duration, int):
            raise ValueError("duration must be a whole number of seconds")
        if not ps.min_duration <= duration <= ps.max_duration:
            raise ValueError(
                f"duration must be between {ps.min_duration} and {ps.max_duration} seconds"
            )
        return question, cleaned, duration

    async def on_start(
        self, service: Any, state: ChannelChatState, client: Any, actor: Any, frame: dict[str, Any]
    ) -> dict[str, Any] | None:
        service.require_moderator(state, actor)  # from memory; ChatError goes to the sender
        try:
            question, options, duration = self._parse_start(frame)
        except ValueError as exc:
            return error("invalid", str(exc))
        current = await self.ensure(state)
        if current is not None and current.ends_ms > now_ms():
            return error("poll_running", "a poll is already running: end it first")
        if current is not None:
            await self.end(state.slug, current.id)  # past its end time: close it first

        async def start() -> store.PollRow:
            async with self.db.session() as session:
                row = await store.start_poll(
                    session,
                    channel_id=state.channel_id,
                    stream_id=state.stream_id,
                    user_id=actor.id,
                    question=question,
                    options=options,
                    now_ms=now_ms(),
                    duration_ms=duration * 1000,
                )
                await session.commit()
                return row

        try:
            row = await retrying(start)
        except ConflictError:
            return error("poll_running", "a poll is already running: end it first")
        poll = Running(row.id, row.question, row.options, row.started_ms, row.ends_ms)
        poll.counts = [0] * len(poll.options)
        await self.chat.publish(state.slug, [self._start_event(poll)])
        return None

    async def on_vote(
        self, service: Any, state: ChannelChatState, client: Any, actor: Any, frame: dict[str, Any]
    ) -> dict[str, Any] | None:
        poll_id, option = frame.get("id"), frame.get("option")
        if isinstance(option, bool) or not isinstance(option, int):
            return error("invalid", "option must be the number of an option (0 for the first)")
        poll = await self.ensure(state)
        if poll is None or poll.id != poll_id or now_ms() >= poll.ends_ms:
            return error("poll_closed", "that poll is not running")
        if not 0 <= option < len(poll.options):
            return error("invalid", f"option must be 0 to {len(poll.options) - 1}")
        try:
            outcome, mine = await self.writer.vote((poll.id, actor.id, option))
        except VoteFailed:
            return error("vote_failed", "your vote could not be saved; try again")
        if outcome == store.CLOSED:
            return error("poll_closed", "that poll is not running")
        if outcome == store.DUPLICATE:
            return {
                **error("already_voted", "you have already voted"),
                "id": poll.id,
                "option": mine,
            }
        self._dirty[poll.id] = state.slug
        self._wake.set()
        return {"type": "poll:voted", "id": poll.id, "option": option}

    async def on_end(
        self, service: Any, state: ChannelChatState, client: Any, actor: Any, frame: dict[str, Any]
    ) -> dict[str, Any] | None:
        service.require_moderator(state, actor)
        poll = await self.ensure(state)
        if poll is None or frame.get("id") not in (None, poll.id):
            return error("poll_closed", "that poll is not running")
        await self.end(state.slug, poll.id)
        return None

    # -- tallies and ends -------------------------------------------------------------------
    async def end(self, slug: str, poll_id: int) -> None:
        """End the poll now (or at its end time, if that has passed); publish the result if
        this process was the one that ended it."""
        if poll_id in self._ending:
            return
        self._ending.add(poll_id)
        try:

            async def end() -> store.PollRow | None:
                async with self.db.session() as session:
                    ended = await store.end_poll(session, poll_id, now_ms())
                    await session.commit()
                    return ended

            row = await retrying(end)
            self._dirty.pop(poll_id, None)
            if row is not None:
                await self.chat.publish(slug, [{"type": "poll:end", "poll": row_document(row)}])
            else:
                held = self.running.get(slug)
                if held is not None and held.id == poll_id:
                    # Ended elsewhere and we missed its event (a bus hiccup): forget it here.
                    self.running[slug] = None
        finally:
            self._ending.discard(poll_id)

    async def _loop(self) -> None:
        interval = self.ps.tally_interval
        while True:
            self._wake.clear()
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("polls: tally failed; retrying")
            if not self._dirty:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._next_wake(interval)):
                        await self._wake.wait()
            await asyncio.sleep(interval)  # at most one tally per interval

    def _next_wake(self, interval: float) -> float:
        ends = [p.ends_ms for p in self.running.values() if p is not None]
        if not ends:
            return 3600.0
        return max(0.0, (min(ends) - now_ms()) / 1000 - interval)

    async def _tick(self) -> None:
        if self._dirty:
            dirty, self._dirty = self._dirty, {}
            known = {
                p.id: (slug, len(p.options))
                for slug, p in self.running.items()
                if p is not None and p.id in dirty
            }
            if known:
                async with self.db.session() as session:
                    counts = await store.tallies(session, {k: n for k, (_, n) in known.items()})
                for pid, (slug, _) in known.items():
                    c = counts[pid]
                    await self.chat.publish(
                        slug, [{"type": "poll:tally", "id": pid, "counts": c, "total": sum(c)}]
                    )
        at = now_ms()
        for slug, poll in list(self.running.items()):
            if poll is not None and poll.ends_ms <= at:
                await self.end(slug, poll.id)
