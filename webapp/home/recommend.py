"""The home page's sections from the live channels and one user's signals: pure code, no I/O.

Sections, in page order, each card at most once on the page:

* "Following — live now": followed channels that are live, the most watched first.
* "Recommended for you": live channels the user does not follow, scored by what they watch and
  follow (a category or a tag in common) and by co-viewing ("viewers of X also watch this"),
  each with the reason of its strongest signal.
* "Popular now": the most watched of the rest, at most ``per_category`` of one category while
  other categories still have channels to show (then the rest, so a quiet hour still fills it).
* "New creators live": channels whose first broadcast is recent.

Channels of users the viewer blocked (or who blocked them) and their own channels are never
suggested; the live list holds listed channels only, so unlisted ones never appear.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from storage.recommendations import ChannelSignal, LiveCard

# Weights of the signals. A channel the user watched counts more the longer they watched it
# (logarithmically: a marathon is not worth a hundred visits); a follow counts as a short watch.
FOLLOW_WEIGHT = 1.0
TAG_FACTOR = 0.5  # a shared tag says less than a shared category
COVIEW_FACTOR = 1.5
# Watched channels whose co-viewers are looked at.
COVIEW_SOURCES = 10


@dataclass(frozen=True)
class Card:
    live: LiveCard
    reason: str | None = None


@dataclass
class Sections:
    following: list[Card] = field(default_factory=list)
    recommended: list[Card] = field(default_factory=list)
    popular: list[Card] = field(default_factory=list)
    new_creators: list[Card] = field(default_factory=list)
    # The live list these were made from: what rendered cards may be shared with.
    generation: LiveIndex | None = None

    def __bool__(self) -> bool:
        return bool(self.following or self.recommended or self.popular or self.new_creators)


@dataclass(frozen=True)
class Limits:
    following: int
    recommended: int
    popular: int
    new_creators: int
    per_category: int
    new_creator_age: timedelta
    # The user's strongest categories and tags that bring in candidates, and how many of the
    # most watched live channels of each.
    signals_used: int = 8
    candidates_per_signal: int = 24


def category_key(category_id: int | None, name: str | None) -> str | None:
    if category_id is not None:
        return f"#{category_id}"
    return name.strip().casefold() if name and name.strip() else None


def watch_weight(signal: ChannelSignal) -> float:
    return 1.0 + math.log1p(max(signal.watched_seconds, 0) / 300.0)


def co_viewing(
    pairs: Iterable[tuple[int, int]], per_user: int, neighbours: int
) -> dict[int, list[tuple[int, int]]]:
    """For each channel, the channels most often watched by the same users in the sample:
    ``{channel: [(other, users who watched both), ...]}``, the most shared first. Each user
    counts once per pair, and only their first ``per_user`` channels of the sample (the pairs
    grow with its square)."""
    watched: dict[int, list[int]] = defaultdict(list)
    for user_id, channel_id in pairs:
        channels = watched[user_id]
        if len(channels) < per_user and channel_id not in channels:
            channels.append(channel_id)
    counts: dict[int, Counter[int]] = defaultdict(Counter)
    for channels in watched.values():
        if len(channels) < 2:
            continue
        for a in channels:
            counter = counts[a]
            for b in channels:
                if a != b:
                    counter[b] += 1
    return {a: counter.most_common(neighbours) for a, counter in counts.items()}


@dataclass
class _Best:
    score: float = 0.0
    top: float = 0.0
    reason: str = ""

    def add(self, score: float, reason: str) -> None:
        self.score += score
        if score > self.top:
            self.top, self.reason = score, reason


@dataclass
class Taste:
    """What one user's follows and history say: weights by category and by tag with the
    reason each would give, and co-viewing scores by channel."""

    categories: dict[str, tuple[float, str]] = field(default_factory=dict)
    tags: dict[str, tuple[float, str]] = field(default_factory=dict)
    coview: dict[int, tuple[float, str]] = field(default_factory=dict)


def _bump(table: dict[str, tuple[float, str]], key: str, weight: float, reason: str) -> None:
    old, old_reason = table.get(key, (0.0, reason))
    # The reason stays the one of the larger contribution (watching beats following).
    table[key] = (old + weight, reason if weight > old else old_reason)


def taste(
    followed: Sequence[ChannelSignal],
    watched: Sequence[ChannelSignal],
    neighbours: dict[int, list[tuple[int, int]]],
) -> Taste:
    t = Taste()
    for signal in watched:
        w = watch_weight(signal)
        key = category_key(signal.category_id, signal.category)
        if key is not None and signal.category:
            _bump(t.categories, key, w, f"Because you watch {signal.category}")
        for tag in signal.tags:
            _bump(t.tags, tag.casefold(), w * TAG_FACTOR, f"Because you watch {tag} streams")
    for signal in followed:
        key = category_key(signal.category_id, signal.category)
        if key is not None and signal.category:
            _bump(
                t.categories, key, FOLLOW_WEIGHT, f"Because you follow {signal.category} channels"
            )
        for tag in signal.tags:
            _bump(
                t.tags,
                tag.casefold(),
                FOLLOW_WEIGHT * TAG_FACTOR,
                f"Because you follow {tag} channels",
            )
    for signal in sorted(watched, key=watch_weight, reverse=True)[:COVIEW_SOURCES]:
        near = neighbours.get(signal.channel_id)
        if not near:
            continue
        w = watch_weight(signal)
        most = near[0][1]
        for other, count in near:
            if other == signal.channel_id:
                continue
            score = COVIEW_FACTOR * w * count / most
            if score > t.coview.get(other, (0.0, ""))[0]:
                t.coview[other] = (score, f"Viewers of {signal.name} also watch this")
    return t


def _strongest(table: dict[str, tuple[float, str]], n: int) -> list[str]:
    return sorted(table, key=lambda k: table[k][0], reverse=True)[:n]


def _score(card: LiveCard, t: Taste) -> _Best:
    best = _Best()
    key = category_key(card.category_id, card.category)
    if key is not None and key in t.categories:
        best.add(*t.categories[key])
    seen: set[str] = set()
    for tag in card.tags:
        folded = tag.casefold()
        if folded in t.tags and folded not in seen:
            seen.add(folded)
            best.add(*t.tags[folded])
    if card.channel_id in t.coview:
        best.add(*t.coview[card.channel_id])
    return best


def spread(cards: Iterable[LiveCard], limit: int, per_category: int) -> list[LiveCard]:
    """The first ``limit`` cards with at most ``per_category`` of one category (no category
    counts as one), then, if that leaves room, the ones held back, in order."""
    picked: list[LiveCard] = []
    held: list[LiveCard] = []
    counts: Counter[str | None] = Counter()
    for card in cards:
        key = category_key(card.category_id, card.category)
        if counts[key] >= per_category:
            held.append(card)
            continue
        counts[key] += 1
        picked.append(card)
        if len(picked) >= limit:
            return picked
    return picked + held[: limit - len(picked)]


def popular_reason(card: LiveCard) -> str:
    return f"Popular in {card.category}" if card.category else "Popular now"


def age_text(first: datetime, now: datetime) -> str:
    days = (now - first).days
    if days <= 0:
        return "New creator, first live today"
    if days == 1:
        return "New creator, first live yesterday"
    return f"New creator, first live {days} days ago"


@dataclass
class LiveIndex:
    """The live channels (the most watched first) indexed for one user's request: built once
    per refresh of the live list, so a request looks at its own candidates (the channels in
    the user's categories and tags, followed or co-viewed) instead of every live channel."""

    cards: list[LiveCard]
    position: dict[int, int]  # channel id -> index in cards
    by_category: dict[str, list[int]]
    by_tag: dict[str, list[int]]
    newcomers: list[int]  # new creators' indexes, most watched first
    first_live: dict[int, datetime]
    built_at: datetime


def index_live(
    cards: list[LiveCard], first_live: dict[int, datetime], now: datetime, limits: Limits
) -> LiveIndex:
    by_category: dict[str, list[int]] = defaultdict(list)
    by_tag: dict[str, list[int]] = defaultdict(list)
    cutoff = now - limits.new_creator_age
    newcomers = []
    for i, card in enumerate(cards):
        key = category_key(card.category_id, card.category)
        if key is not None:
            by_category[key].append(i)
        for tag in {t.casefold() for t in card.tags}:
            by_tag[tag].append(i)
        first = first_live.get(card.channel_id)
        if first is not None and first >= cutoff:
            newcomers.append(i)
    return LiveIndex(
        cards,
        {c.channel_id: i for i, c in enumerate(cards)},
        dict(by_category),
        dict(by_tag),
        newcomers,
        {c.channel_id: first_live[c.channel_id] for c in cards if c.channel_id in first_live},
        now,
    )


def anonymous_sections(live: LiveIndex, limits: Limits) -> Sections:
    popular = spread(live.cards, limits.popular, limits.per_category)
    return Sections(popular=[Card(c, popular_reason(c)) for c in popular], generation=live)


def user_sections(
    live: LiveIndex,
    *,
    user_id: int,
    followed: Sequence[ChannelSignal],
    watched: Sequence[ChannelSignal],
    blocked: set[int],
    neighbours: dict[int, list[tuple[int, int]]],
    limits: Limits,
) -> Sections:
    """The four sections for ``user_id``."""
    cards = live.cards

    def allowed(i: int) -> bool:
        return cards[i].owner_id not in blocked

    followed_ids = {s.channel_id for s in followed}
    out = Sections(generation=live)
    shown: set[int] = set()  # indexes

    following = sorted(
        i for cid in followed_ids if (i := live.position.get(cid)) is not None and allowed(i)
    )[: limits.following]
    out.following = [Card(cards[i]) for i in following]
    shown.update(following)

    t = taste(followed, watched, neighbours)
    # Candidates: the most watched few of each of the user's strongest categories and tags,
    # and the co-viewed channels, so the work per visit is bounded whatever is live. Within
    # a category every channel gets the same weight from it, and one further down the list
    # could only overtake through a tag or co-viewing, which bring it in by themselves.
    per_key = limits.candidates_per_signal
    candidates: set[int] = set()
    for key in _strongest(t.categories, limits.signals_used):
        candidates.update(live.by_category.get(key, ())[:per_key])
    for tag in _strongest(t.tags, limits.signals_used):
        candidates.update(live.by_tag.get(tag, ())[:per_key])
    candidates.update(i for cid in t.coview if (i := live.position.get(cid)) is not None)
    scored: list[tuple[float, int, str]] = []
    for i in candidates:
        card = cards[i]
        if card.channel_id in followed_ids or card.owner_id == user_id or not allowed(i):
            continue
        best = _score(card, t)
        if best.score > 0:
            scored.append((best.score, i, best.reason))
    scored.sort(key=lambda item: (-item[0], item[1]))  # ties: the more watched first
    recommended = scored[: limits.recommended]
    out.recommended = [Card(cards[i], reason) for _, i, reason in recommended]
    shown.update(i for _, i, _ in recommended)

    # New creators before popular: on a quiet site popular would take them all, and a
    # newcomer with few viewers is rarely among the most watched anyway.
    newcomers: list[int] = []
    for i in live.newcomers:
        if len(newcomers) >= limits.new_creators:
            break
        if i not in shown and allowed(i) and cards[i].owner_id != user_id:
            newcomers.append(i)
    out.new_creators = [
        Card(cards[i], age_text(live.first_live[cards[i].channel_id], live.built_at))
        for i in newcomers
    ]
    shown.update(newcomers)

    rest = (c for i, c in enumerate(cards) if i not in shown and allowed(i))
    out.popular = [
        Card(c, popular_reason(c)) for c in spread(rest, limits.popular, limits.per_category)
    ]
    return out
