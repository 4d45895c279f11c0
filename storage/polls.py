"""Live polls (issue 16): start, vote, count, end, and the polls of a broadcast.

Exactness comes from the database, not from what any process remembers: a vote is a row whose
primary key is (poll, user), inserted with ``ON CONFLICT DO NOTHING``, so a second vote by the
same user (another socket, another process, a reconnect) adds nothing; tallies are counted from
those rows. A vote locks its poll row for share (PostgreSQL) and checks the poll is still open
in the same statement; ending the poll updates that row, so it waits for votes in flight to
commit and every vote after it sees the poll closed: the result counted when it ends is final.
On SQLite writes are serialised anyway. Times are epoch milliseconds (``poll_models``).

Like ``storage.follows``: every function takes an ``AsyncSession``, flushes, never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import busy, rowcount
from storage.errors import ConflictError
from storage.poll_models import Poll, PollVote

# What vote() found.
VOTED = "voted"
DUPLICATE = "duplicate"  # this user already voted in this poll
CLOSED = "closed"  # no such poll, or it has ended


@dataclass(frozen=True)
class PollRow:
    id: int
    channel_id: int
    stream_id: int | None
    question: str
    options: list[str]
    started_ms: int
    ends_ms: int
    ended_ms: int | None
    result: list[int] | None

    @property
    def running(self) -> bool:
        return self.ended_ms is None


def _row(p: Poll) -> PollRow:
    return PollRow(
        id=p.id,
        channel_id=p.channel_id,
        stream_id=p.stream_id,
        question=p.question,
        options=list(p.options),
        started_ms=int(p.started_ms),
        ends_ms=int(p.ends_ms),
        ended_ms=None if p.ended_ms is None else int(p.ended_ms),
        result=None if p.result is None else [int(n) for n in p.result],
    )


async def running_poll(session: AsyncSession, channel_id: int) -> PollRow | None:
    """The channel's poll that has not been ended (it may be past its end time, waiting for
    ``end_poll``)."""
    found = (
        await session.execute(select(Poll).where(Poll.open_channel_id == channel_id))
    ).scalar_one_or_none()
    return None if found is None else _row(found)


async def start_poll(
    session: AsyncSession,
    *,
    channel_id: int,
    stream_id: int | None,
    user_id: int | None,
    question: str,
    options: list[str],
    now_ms: int,
    duration_ms: int,
) -> PollRow:
    """A new running poll. ConflictError while another poll of the channel is running (one
    past its end time but not yet ended counts as running: end it first)."""
    if await running_poll(session, channel_id) is not None:
        raise ConflictError("a poll is already running in this channel")
    poll = Poll(
        channel_id=channel_id,
        stream_id=stream_id,
        created_by=user_id,
        question=question,
        options=options,
        started_ms=now_ms,
        ends_ms=now_ms + duration_ms,
        open_channel_id=channel_id,
    )
    session.add(poll)
    try:
        await session.flush()
    except IntegrityError:  # another process started one between our check and the insert
        raise ConflictError("a poll is already running in this channel") from None
    return _row(poll)


async def vote(session: AsyncSession, poll_id: int, user_id: int, option: int, now_ms: int) -> str:
    """Record ``user_id``'s vote: VOTED, DUPLICATE (already voted: nothing changes) or CLOSED.
    ``option`` must be an index of the poll's options (one out of range is CLOSED, not stored).
    """
    return (await votes(session, [(poll_id, user_id, option)], now_ms))[0][0]


_VOTES = cast(Table, PollVote.__table__)
# Core statements on the table (not the ORM entity): executed with a list of rows they are an
# executemany, compiled once and cached.
_INSERT_VOTES = {
    name: insert(_VOTES)
    .on_conflict_do_nothing(index_elements=[_VOTES.c.poll_id, _VOTES.c.user_id])
    .returning(_VOTES.c.poll_id, _VOTES.c.user_id)
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


async def votes(
    session: AsyncSession, ballots: Sequence[tuple[int, int, int]], now_ms: int
) -> list[tuple[str, int | None]]:
    """Several votes (poll id, user id, option) in one transaction, the answer to each in
    order: (VOTED, None), (DUPLICATE, the option kept) or (CLOSED, None). Group commit: a
    thousand viewers voting at once cost a few transactions, not a thousand.

    The writes are ONE ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` after the reads, so the
    transaction holds SQLite's write lock only for that statement and the commit, however many
    votes the batch holds and however busy the event loop is between statements. It is one
    cached statement executed with the rows as parameters (SQLAlchemy sends them as multi-row
    batches), not a statement built with the rows in it: compiling a 500-row VALUES clause took
    ~45 ms of the event loop, a stall every viewer in every room felt when a poll opened in a
    big one. A user's second ballot in the same batch is a DUPLICATE like any other."""
    ids = sorted({pid for pid, _, _ in ballots})
    open_polls = {
        pid: len(options)
        for pid, options in (
            await session.execute(
                select(Poll.id, Poll.options)
                .where(Poll.id.in_(ids), Poll.ended_ms.is_(None), Poll.ends_ms > now_ms)
                .with_for_update(read=True)
            )
        ).all()
    }
    users = sorted({uid for _, uid, _ in ballots})
    kept: dict[tuple[int, int], int] = {
        (pid, uid): int(option)
        for pid, uid, option in (
            await session.execute(
                select(PollVote.poll_id, PollVote.user_id, PollVote.option).where(
                    PollVote.poll_id.in_(ids), PollVote.user_id.in_(users)
                )
            )
        ).all()
    }
    out: list[tuple[str, int | None]] = []
    new: dict[tuple[int, int], int] = {}
    for poll_id, user_id, option in ballots:
        key = (poll_id, user_id)
        if not 0 <= option < open_polls.get(poll_id, 0):
            out.append((CLOSED, None))
        elif key in kept or key in new:
            out.append((DUPLICATE, kept.get(key, new.get(key))))
        else:
            new[key] = option
            out.append((VOTED, None))
    if not new:
        return out
    rows = [
        {"poll_id": pid, "user_id": uid, "option": option, "voted_ms": now_ms}
        for (pid, uid), option in new.items()
    ]
    dialect = session.get_bind().dialect.name
    added = {
        (pid, uid)
        for pid, uid in await session.execute(
            _INSERT_VOTES[dialect if dialect == "postgresql" else "sqlite"], rows
        )
    }
    lost = [key for key in new if key not in added]  # another process's vote came first
    if lost:
        theirs = {
            (pid, uid): int(option)
            for pid, uid, option in (
                await session.execute(
                    select(PollVote.poll_id, PollVote.user_id, PollVote.option).where(
                        PollVote.poll_id.in_({k[0] for k in lost}),
                        PollVote.user_id.in_({k[1] for k in lost}),
                    )
                )
            ).all()
        }
        for i, (poll_id, user_id, _) in enumerate(ballots):
            key = (poll_id, user_id)
            if key in lost and out[i][0] == VOTED:
                out[i] = (DUPLICATE, theirs.get(key))
    return out


async def has_voted(session: AsyncSession, poll_id: int, user_id: int) -> int | None:
    """The option ``user_id`` voted for in the poll, or None."""
    return (
        await session.execute(
            select(PollVote.option).where(PollVote.poll_id == poll_id, PollVote.user_id == user_id)
        )
    ).scalar_one_or_none()


async def tallies(session: AsyncSession, polls: dict[int, int]) -> dict[int, list[int]]:
    """Votes per option of each poll (``polls`` maps a poll id to its number of options), in
    one query."""
    out = {pid: [0] * n for pid, n in polls.items()}
    if not polls:
        return out
    rows = await session.execute(
        select(PollVote.poll_id, PollVote.option, func.count())
        .where(PollVote.poll_id.in_(list(polls)))
        .group_by(PollVote.poll_id, PollVote.option)
    )
    for pid, option, n in rows:
        counts = out[pid]
        if 0 <= option < len(counts):
            counts[option] = int(n)
    return out


async def end_poll(session: AsyncSession, poll_id: int, now_ms: int) -> PollRow | None:
    """End the poll (at ``now_ms``, or at its end time if that has passed) and store its final
    result; None if it had already ended (another process, or the owner, got there first)."""
    poll = await session.get(Poll, poll_id)
    if poll is None or poll.ended_ms is not None:
        return None
    ended = min(now_ms, int(poll.ends_ms))
    changed = await session.execute(
        update(Poll)
        .where(Poll.id == poll_id, Poll.ended_ms.is_(None))
        .values(ended_ms=ended, open_channel_id=None)
        .execution_options(synchronize_session=False)
    )
    if not rowcount(changed):
        return None
    counts = (await tallies(session, {poll_id: len(poll.options)}))[poll_id]
    await session.execute(
        update(Poll)
        .where(Poll.id == poll_id)
        .values(result=counts)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    await session.refresh(poll)
    return _row(poll)


async def get_poll(session: AsyncSession, poll_id: int) -> PollRow | None:
    found = await session.get(Poll, poll_id)
    return None if found is None else _row(found)


async def channel_polls(
    session: AsyncSession, channel_id: int, *, stream_id: int | None = None, limit: int = 50
) -> list[PollRow]:
    """The channel's polls, newest first (only those of one broadcast when ``stream_id``)."""
    query = select(Poll).where(Poll.channel_id == channel_id)
    if stream_id is not None:
        query = query.where(Poll.stream_id == stream_id)
    rows = await session.execute(query.order_by(Poll.id.desc()).limit(limit))
    return [_row(p) for p in rows.scalars()]


async def stream_polls(session: AsyncSession, stream_id: int, limit: int = 50) -> list[PollRow]:
    """A broadcast's polls in the order they ran (its analytics report shows them), with the
    current counts standing in for the result of one still running."""
    rows = await session.execute(
        select(Poll).where(Poll.stream_id == stream_id).order_by(Poll.id).limit(limit)
    )
    polls = [_row(p) for p in rows.scalars()]
    live = {p.id: len(p.options) for p in polls if p.result is None}
    if not live:
        return polls
    counts = await tallies(session, live)
    return [
        p if p.result is not None else PollRow(**{**p.__dict__, "result": counts[p.id]})
        for p in polls
    ]


__all__ = [
    "busy",
    "CLOSED",
    "DUPLICATE",
    "VOTED",
    "PollRow",
    "channel_polls",
    "end_poll",
    "get_poll",
    "has_voted",
    "running_poll",
    "start_poll",
    "stream_polls",
    "tallies",
    "vote",
    "votes",
]
