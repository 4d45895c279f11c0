"""The home page's ranking (webapp/home/recommend.py) as pure code: the per-category spread,
co-viewing counts, which reason a card gives, and what is never suggested."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.recommendations import ChannelSignal, LiveCard
from webapp.home.recommend import (
    Limits,
    co_viewing,
    index_live,
    spread,
    user_sections,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LIMITS = Limits(
    following=5,
    recommended=5,
    popular=4,
    new_creators=3,
    per_category=2,
    new_creator_age=timedelta(days=14),
)


def card(cid: int, category: str | None, viewers: int = 0, owner: int | None = None, tags=()):
    return LiveCard(
        stream_id=cid,
        title=f"stream {cid}",
        viewers=viewers,
        started_at=NOW,
        channel_id=cid,
        slug=f"c{cid}",
        channel_name=f"C{cid}",
        owner_id=owner if owner is not None else 1000 + cid,
        creator=f"owner{cid}",
        avatar_path=None,
        category_id=None,
        category=category,
        tags=tuple(tags),
    )


def test_spread_caps_a_category_while_others_wait_then_fills() -> None:
    cards = [card(i, "Gaming", 100 - i) for i in range(5)] + [card(10, "Music", 1)]
    assert [c.channel_id for c in spread(cards, 4, 2)] == [0, 1, 10, 2]
    # Only one category live: it fills the section.
    assert [c.channel_id for c in spread(cards[:5], 4, 2)] == [0, 1, 2, 3]


def test_co_viewing_counts_each_user_once_per_pair() -> None:
    pairs = [(1, 10), (1, 20), (1, 10), (2, 10), (2, 20), (2, 30), (3, 30)]
    near = co_viewing(pairs, per_user=16, neighbours=5)
    assert near[10] == [(20, 2), (30, 1)]
    assert near[30] == [(10, 1), (20, 1)]
    # A user's channels beyond per_user do not count.
    assert 30 not in dict(co_viewing(pairs, per_user=2, neighbours=5).get(10, []))


def test_reasons_exclusions_and_sections() -> None:
    me = 7
    live = [
        card(1, "Music", 50),  # followed
        card(2, "Music", 40),  # same category as what I watch
        card(3, "Art", 30, tags=["Synthwave"]),  # a tag I watch
        card(4, "Food", 20),  # co-viewed with what I watch
        card(5, "Music", 60, owner=99),  # its owner is blocked
        card(6, "Music", 10, owner=me),  # my own channel
        card(8, "Chess", 5),  # a new creator
    ]
    index = index_live(live, {8: NOW - timedelta(days=1)}, NOW, LIMITS)
    followed = [ChannelSignal(1, "C1", None, "Music", ())]
    watched = [ChannelSignal(9, "Old Fav", None, "Music", ("synthwave",), 3600, 3)]
    sections = user_sections(
        index,
        user_id=me,
        followed=followed,
        watched=watched,
        blocked={99},
        neighbours={9: [(4, 3)]},
        limits=LIMITS,
    )
    assert [c.live.channel_id for c in sections.following] == [1]
    reasons = {c.live.channel_id: c.reason for c in sections.recommended}
    assert reasons == {
        2: "Because you watch Music",
        3: "Because you watch synthwave streams",
        4: "Viewers of Old Fav also watch this",
    }
    assert [(c.live.channel_id, c.reason) for c in sections.new_creators] == [
        (8, "New creator, first live yesterday")
    ]
    shown = [
        c.live.channel_id
        for part in (sections.following, sections.recommended, sections.popular)
        for c in part
    ] + [c.live.channel_id for c in sections.new_creators]
    assert 5 not in shown  # blocked owner, in every section
    assert len(shown) == len(set(shown))
    assert 6 not in reasons  # never recommended my own channel
