"""Search over channels, users, categories and past broadcasts, on SQLite and PostgreSQL.

One API, two index families (created by migration 0007): FTS5 word and trigram tables on
SQLite, ``tsvector``/``pg_trgm`` expression indexes on PostgreSQL. Each search gathers
bounded sets of candidate ids from the indexes, then loads those rows with the visibility
rules and orders them in Python:

1. names that start with the query (a prefix index: FTS5 ``^`` or a btree range), so an exact
   or prefix match is never crowded out by a thousand rows that merely mention the word;
2. rows whose text has every word of the query (word prefixes), capped at ``candidates`` in
   an order the index serves cheaply (channels: live, then followers);
3. only when those are few (under ``fuzzy_below``): names that share trigrams with the query,
   kept if every word is within a small edit distance (``search_text.fuzzy_matches``).

Order: match tier (exact, prefix, text, typo), then live before offline and more followers
first (channels), then text rank, then id. Unlisted channels, their broadcasts, disabled
users and their channels, and retired categories are never returned. Pagination is a keyset
cursor on that order, so a page never repeats or skips a row of an unchanged result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage import search_text as st
from storage.discovery_models import Category
from storage.models import Channel, Profile, Stream, StreamStatus, User
from storage.search_text import InvalidCursor

SEARCH_TYPES = ("channels", "users", "categories", "videos")
PAST = (StreamStatus.OFFLINE, StreamStatus.ARCHIVED)

__all__ = [
    "SEARCH_TYPES",
    "InvalidCursor",
    "SearchLimits",
    "ChannelHit",
    "UserHit",
    "CategoryHit",
    "VideoHit",
    "SearchPage",
    "search",
    "suggest",
]


@dataclass(frozen=True)
class SearchLimits:
    """The bounds of one search (from the ``search`` settings)."""

    max_words: int = 8
    # Candidate ids taken from each index per search: what bounds the work of a query that
    # matches half the site, and how far pagination can go.
    candidates: int = 200
    # Typo tolerance runs when the exact and word matches found fewer rows than this...
    fuzzy_below: int = 10
    # ...and takes at most this many rows from the trigram index.
    fuzzy_candidates: int = 50


@dataclass(frozen=True)
class ChannelHit:
    id: int
    slug: str
    name: str
    owner: str
    live: bool
    title: str
    viewers: int
    followers: int
    category: str | None
    tags: list[str]
    avatar_path: str | None
    kind: str = "channel"


@dataclass(frozen=True)
class UserHit:
    id: int
    username: str
    display_name: str
    avatar_path: str | None
    kind: str = "user"


@dataclass(frozen=True)
class CategoryHit:
    id: int
    slug: str
    name: str
    box_art_path: str | None
    kind: str = "category"


@dataclass(frozen=True)
class VideoHit:
    id: int
    public_id: str
    title: str
    channel_slug: str
    channel_name: str
    category: str | None
    started_at: datetime | None
    duration_seconds: float | None
    thumbnail_path: str | None
    vod_available: bool
    kind: str = "video"


Hit = ChannelHit | UserHit | CategoryHit | VideoHit


@dataclass
class SearchPage:
    items: list[Any] = field(default_factory=list)
    next_cursor: str | None = None


# Sort key length per type (what a cursor holds).
KEY_LENGTH = {"channels": 5, "users": 3, "categories": 3, "videos": 3}


@dataclass
class _Candidates:
    rank: dict[int, float] = field(default_factory=dict)
    fuzzy: set[int] = field(default_factory=set)

    def add(self, rows: Sequence[Any]) -> None:
        for row in rows:
            score = float(row[1]) if len(row) > 1 and row[1] is not None else 0.0
            self.rank[row[0]] = max(self.rank.get(row[0], score), score)


# -- SQLite --------------------------------------------------------------------------------

# FTS5 ``rank`` is bm25, lower is better: the score is its negation.
_SQLITE_TEXT = {
    "channels": """SELECT c.id, -f.rank FROM search_channels f JOIN channels c ON c.id = f.rowid
        WHERE search_channels MATCH :m AND c.is_public = 1
        ORDER BY EXISTS (SELECT 1 FROM streams s WHERE s.channel_id = c.id
                         AND s.status = 'live') DESC, c.follower_count DESC, c.id LIMIT :cap""",
    "users": """SELECT f.rowid, -f.rank FROM search_users f
        WHERE search_users MATCH :m ORDER BY f.rowid LIMIT :cap""",
    "categories": """SELECT f.rowid, -f.rank FROM search_categories f
        WHERE search_categories MATCH :m ORDER BY f.rowid LIMIT :cap""",
    "videos": """SELECT f.rowid, -f.rank FROM search_videos f
        WHERE search_videos MATCH :m ORDER BY f.rowid DESC LIMIT :cap""",
}
_SQLITE_NAME_COLUMNS = {
    "channels": ("name", "slug"),
    "users": ("username", "display_name"),
    "categories": ("name",),
    "videos": ("title",),
}
_SQLITE_INITIAL = {
    kind: f"SELECT f.rowid, -f.rank FROM search_{kind} f WHERE search_{kind} MATCH :m "
    + ("ORDER BY f.rowid DESC" if kind == "videos" else "ORDER BY f.rowid")
    + " LIMIT :cap"
    for kind in SEARCH_TYPES
}
_SQLITE_FUZZY = {
    kind: f"SELECT f.rowid FROM search_{kind}_fuzzy f WHERE search_{kind}_fuzzy MATCH :m "
    "ORDER BY f.rank LIMIT :cap"
    for kind in SEARCH_TYPES
}


async def _sqlite_candidates(
    session: AsyncSession, kind: str, query: str, qwords: list[str], limits: SearchLimits
) -> _Candidates:
    found = _Candidates()
    initial = st.fts_initial(qwords, _SQLITE_NAME_COLUMNS[kind])
    found.add(
        (
            await session.execute(
                text(_SQLITE_INITIAL[kind]), {"m": initial, "cap": limits.candidates}
            )
        ).all()
    )
    found.add(
        (
            await session.execute(
                text(_SQLITE_TEXT[kind]), {"m": st.fts_match(qwords), "cap": limits.candidates}
            )
        ).all()
    )
    if kind == "channels":
        slug = query.strip().lower()
        found.add((await session.execute(select(Channel.id).where(Channel.slug == slug))).all())
    if len(found.rank) < limits.fuzzy_below:
        fuzzy = st.fuzzy_fts_match(qwords)
        if fuzzy is not None:
            rows = await session.execute(
                text(_SQLITE_FUZZY[kind]), {"m": fuzzy, "cap": limits.fuzzy_candidates}
            )
            found.fuzzy = {row[0] for row in rows} - found.rank.keys()
    return found


# -- PostgreSQL ----------------------------------------------------------------------------

# The very expressions of migration 0007's indexes, or the planner cannot use them.
_PG_CHANNEL_DOCUMENT = (
    "to_tsvector('simple', c.name || ' ' || c.slug || ' ' || c.description || ' ' || "
    "coalesce(c.tags::text, ''))"
)
# ``id + 0`` keeps the planner from walking the primary key in order and testing every row
# against the text (fast when most rows match, a full scan when few do): the GIN index finds
# the matches, then the few hundred wanted are sorted.
_PG_TEXT = {
    "channels": f"""WITH m AS (
          SELECT c.id FROM channels c WHERE {_PG_CHANNEL_DOCUMENT} @@ to_tsquery('simple', :m)
          AND c.is_public
          ORDER BY EXISTS (SELECT 1 FROM streams s WHERE s.channel_id = c.id
                           AND s.status = 'live') DESC, c.follower_count DESC, c.id + 0
          LIMIT :cap)
        SELECT c.id, ts_rank({_PG_CHANNEL_DOCUMENT}, to_tsquery('simple', :m))
        FROM m JOIN channels c ON c.id = m.id""",
    # The title of a channel's live or last broadcast: among the newest matching broadcasts,
    # those that are their channel's latest.
    "channel_titles": """WITH m AS (
          SELECT s.id, s.channel_id, s.title FROM streams s
          WHERE to_tsvector('simple', s.title) @@ to_tsquery('simple', :m)
          ORDER BY s.id + 0 DESC LIMIT :cap)
        SELECT m.channel_id, ts_rank(to_tsvector('simple', m.title), to_tsquery('simple', :m))
        FROM m WHERE NOT EXISTS (
          SELECT 1 FROM streams s2 WHERE s2.channel_id = m.channel_id AND s2.id > m.id)""",
    "users": """WITH m AS (
          (SELECT u.id FROM users u
           WHERE to_tsvector('simple', u.username) @@ to_tsquery('simple', :m)
           ORDER BY u.id + 0 LIMIT :cap)
          UNION
          (SELECT p.user_id FROM profiles p
           WHERE to_tsvector('simple', p.display_name) @@ to_tsquery('simple', :m)
           ORDER BY p.user_id + 0 LIMIT :cap))
        SELECT m.id, ts_rank(to_tsvector('simple', u.username || ' ' ||
                                         coalesce(p.display_name, '')),
                             to_tsquery('simple', :m))
        FROM m JOIN users u ON u.id = m.id LEFT JOIN profiles p ON p.user_id = m.id""",
    "categories": """SELECT c.id, ts_rank(to_tsvector('simple', c.name), to_tsquery('simple', :m))
        FROM categories c WHERE to_tsvector('simple', c.name) @@ to_tsquery('simple', :m)
        ORDER BY c.id + 0 LIMIT :cap""",
    "videos": """WITH m AS (
          SELECT s.id, s.title FROM streams s
          WHERE to_tsvector('simple', s.title) @@ to_tsquery('simple', :m)
          ORDER BY s.id + 0 DESC LIMIT :cap)
        SELECT m.id, ts_rank(to_tsvector('simple', m.title), to_tsquery('simple', :m)) FROM m""",
}
# Names (lower-cased, C collation) in [lo, hi): they start with the query.
_PG_PREFIX = {
    "channels": """SELECT id FROM channels WHERE lower(name) COLLATE "C" >= :lo
        AND lower(name) COLLATE "C" < :hi ORDER BY lower(name) COLLATE "C" LIMIT :cap""",
    "users": """(SELECT id FROM users WHERE lower(username) COLLATE "C" >= :lo
          AND lower(username) COLLATE "C" < :hi ORDER BY lower(username) COLLATE "C" LIMIT :cap)
        UNION (SELECT user_id FROM profiles WHERE lower(display_name) COLLATE "C" >= :lo
          AND lower(display_name) COLLATE "C" < :hi
          ORDER BY lower(display_name) COLLATE "C" LIMIT :cap)""",
    "categories": """SELECT id FROM categories WHERE lower(name) COLLATE "C" >= :lo
        AND lower(name) COLLATE "C" < :hi ORDER BY lower(name) COLLATE "C" LIMIT :cap""",
    "videos": """SELECT id FROM streams WHERE lower(title) COLLATE "C" >= :lo
        AND lower(title) COLLATE "C" < :hi ORDER BY lower(title) COLLATE "C" LIMIT :cap""",
}
# Trigram similarity of the query to a word of the name (pg_trgm's ``<%``, GIN-indexed).
_PG_FUZZY = {
    "channels": """SELECT id FROM channels WHERE :q <% lower(name)
        ORDER BY word_similarity(:q, lower(name)) DESC, id LIMIT :cap""",
    "users": """(SELECT id FROM users WHERE :q <% lower(username)
          ORDER BY word_similarity(:q, lower(username)) DESC, id LIMIT :cap)
        UNION (SELECT user_id FROM profiles WHERE :q <% lower(display_name)
          ORDER BY word_similarity(:q, lower(display_name)) DESC, user_id LIMIT :cap)""",
    "categories": """SELECT id FROM categories WHERE :q <% lower(name)
        ORDER BY word_similarity(:q, lower(name)) DESC, id LIMIT :cap""",
    "videos": """SELECT id FROM streams WHERE :q <% lower(title)
        ORDER BY word_similarity(:q, lower(title)) DESC, id DESC LIMIT :cap""",
}
# Lower than pg_trgm's default (0.6): one swapped pair of letters in "factorio" leaves 0.55.
# The edit-distance check in Python has the last word.
PG_WORD_SIMILARITY = 0.4


async def _pg_candidates(
    session: AsyncSession, kind: str, query: str, qwords: list[str], limits: SearchLimits
) -> _Candidates:
    found = _Candidates()
    tsq = st.ts_query(qwords)
    cap = limits.candidates
    bounds = st.prefix_range(query)
    if bounds is not None:
        rows = await session.execute(
            text(_PG_PREFIX[kind]), {"lo": bounds[0], "hi": bounds[1], "cap": cap}
        )
        found.add(rows.all())
    found.add((await session.execute(text(_PG_TEXT[kind]), {"m": tsq, "cap": cap})).all())
    if kind == "channels":
        found.add(
            (await session.execute(text(_PG_TEXT["channel_titles"]), {"m": tsq, "cap": cap})).all()
        )
        slug = query.strip().lower()
        found.add((await session.execute(select(Channel.id).where(Channel.slug == slug))).all())
    if len(found.rank) < limits.fuzzy_below and any(st.allowed_typos(w) for w in qwords):
        await session.execute(
            text("SELECT set_config('pg_trgm.word_similarity_threshold', :t, true)"),
            {"t": str(PG_WORD_SIMILARITY)},
        )
        rows = await session.execute(
            text(_PG_FUZZY[kind]), {"q": " ".join(qwords), "cap": limits.fuzzy_candidates}
        )
        found.fuzzy = {row[0] for row in rows} - found.rank.keys()
    return found


# -- loading and ordering ------------------------------------------------------------------


async def _channels(
    session: AsyncSession, ids: list[int]
) -> dict[int, tuple[ChannelHit, list[str]]]:
    live = aliased(Stream)
    last_title = (
        select(Stream.title)
        .where(Stream.channel_id == Channel.id)
        .order_by(Stream.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(
            Channel.id,
            Channel.slug,
            Channel.name,
            Channel.tags,
            Channel.follower_count,
            Channel.avatar_path,
            Channel.category,
            User.username,
            Category.name,
            live.id,
            live.viewer_count,
            last_title,
        )
        .join(User, User.id == Channel.owner_id)
        .outerjoin(Category, Category.id == Channel.category_id)
        .outerjoin(live, and_(live.channel_id == Channel.id, live.status == StreamStatus.LIVE))
        .where(
            Channel.id.in_(bindparam("ids", expanding=True)),
            Channel.is_public.is_(True),
            User.is_disabled.is_(False),
        ),
        {"ids": ids},
    )
    out = {}
    for r in rows:
        hit = ChannelHit(
            id=r[0],
            slug=r[1],
            name=r[2],
            tags=[str(t) for t in (r[3] or []) if isinstance(t, str)],
            followers=r[4],
            avatar_path=r[5],
            category=r[8] or r[6],
            owner=r[7],
            live=r[9] is not None,
            viewers=r[10] or 0,
            title=r[11] or r[2],
        )
        out[hit.id] = (hit, [hit.name, hit.slug])
    return out


async def _users(session: AsyncSession, ids: list[int]) -> dict[int, tuple[UserHit, list[str]]]:
    rows = await session.execute(
        select(User.id, User.username, Profile.display_name, Profile.avatar_path)
        .outerjoin(Profile, Profile.user_id == User.id)
        .where(User.id.in_(bindparam("ids", expanding=True)), User.is_disabled.is_(False)),
        {"ids": ids},
    )
    out = {}
    for r in rows:
        hit = UserHit(id=r[0], username=r[1], display_name=r[2] or r[1], avatar_path=r[3])
        out[hit.id] = (hit, [hit.username, hit.display_name])
    return out


async def _categories(
    session: AsyncSession, ids: list[int]
) -> dict[int, tuple[CategoryHit, list[str]]]:
    rows = await session.execute(
        select(Category.id, Category.slug, Category.name, Category.box_art_path).where(
            Category.id.in_(bindparam("ids", expanding=True)), Category.retired_at.is_(None)
        ),
        {"ids": ids},
    )
    out = {}
    for r in rows:
        hit = CategoryHit(id=r[0], slug=r[1], name=r[2], box_art_path=r[3])
        out[hit.id] = (hit, [hit.name])
    return out


async def _videos(session: AsyncSession, ids: list[int]) -> dict[int, tuple[VideoHit, list[str]]]:
    rows = await session.execute(
        select(
            Stream.id,
            Stream.public_id,
            Stream.title,
            Channel.slug,
            Channel.name,
            Category.name,
            Stream.category,
            Stream.started_at,
            Stream.vod_duration_seconds,
            Stream.duration_seconds,
            Stream.thumbnail_path,
            Stream.vod_available,
            Stream.status,
        )
        .join(Channel, Channel.id == Stream.channel_id)
        .join(User, User.id == Channel.owner_id)
        .outerjoin(Category, Category.id == Stream.category_id)
        .where(
            Stream.id.in_(bindparam("ids", expanding=True)),
            Stream.status.in_(PAST),
            Channel.is_public.is_(True),
            User.is_disabled.is_(False),
        ),
        {"ids": ids},
    )
    out = {}
    for r in rows:
        hit = VideoHit(
            id=r[0],
            public_id=r[1],
            title=r[2],
            channel_slug=r[3],
            channel_name=r[4],
            category=r[5] or r[6],
            started_at=r[7],
            duration_seconds=r[8] if r[8] is not None else r[9],
            thumbnail_path=r[10],
            vod_available=bool(r[11]) and r[12] is StreamStatus.ARCHIVED,
        )
        out[hit.id] = (hit, [hit.title])
    return out


_LOADERS: dict[str, Any] = {
    "channels": _channels,
    "users": _users,
    "categories": _categories,
    "videos": _videos,
}


def _key(kind: str, hit: Any, tier: int, score: float) -> tuple[float, ...]:
    # Rounded so the key a cursor carries compares equal to the one computed next time.
    rank = -round(score, 6)
    if kind == "channels":
        return (tier, 0 if hit.live else 1, -hit.followers, rank, hit.id)
    if kind == "videos":
        return (tier, rank, -hit.id)
    return (tier, rank, hit.id)


async def search(
    session: AsyncSession,
    q: str,
    kind: str,
    limit: int,
    cursor: str | None = None,
    limits: SearchLimits | None = None,
) -> SearchPage:
    """One page of ``kind`` hits for ``q``; ``cursor`` from the previous page's
    ``next_cursor``. InvalidCursor for a cursor this search did not make; ValueError for an
    unknown kind. A query without any letter or digit finds nothing."""
    if kind not in SEARCH_TYPES:
        raise ValueError(f"unknown search type {kind!r}")
    limits = limits or SearchLimits()
    after = st.decode_cursor(kind, cursor, KEY_LENGTH[kind]) if cursor else None
    qwords = st.words(q, limits.max_words)
    if not qwords or limit <= 0:
        return SearchPage()
    dialect = session.get_bind().dialect.name
    gather = _pg_candidates if dialect == "postgresql" else _sqlite_candidates
    found = await gather(session, kind, q, qwords, limits)
    ids = sorted(found.rank.keys() | found.fuzzy)
    if not ids:
        return SearchPage()
    loaded = await _LOADERS[kind](session, ids)
    keyed = []
    for hit_id, (hit, names) in loaded.items():
        if hit_id in found.rank:
            tier = st.tier(qwords, names)
        else:
            fuzzy = st.fuzzy_tier(qwords, names)
            if fuzzy is None:
                continue
            tier = fuzzy
        keyed.append((_key(kind, hit, tier, found.rank.get(hit_id, 0.0)), hit))
    keyed.sort(key=lambda pair: pair[0])
    if after is not None:
        keyed = [pair for pair in keyed if pair[0] > after]
    page = keyed[:limit]
    more = len(keyed) > limit
    return SearchPage(
        items=[hit for _, hit in page],
        next_cursor=st.encode_cursor(kind, page[-1][0]) if more and page else None,
    )


async def suggest(
    session: AsyncSession, q: str, per_type: int = 3, limits: SearchLimits | None = None
) -> dict[str, list[Any]]:
    """A few of each type for the search box's as-you-type list."""
    base = limits or SearchLimits()
    small = SearchLimits(
        max_words=base.max_words,
        candidates=min(base.candidates, max(per_type * 10, 20)),
        fuzzy_below=min(base.fuzzy_below, per_type),
        fuzzy_candidates=min(base.fuzzy_candidates, 20),
    )
    return {
        kind: (await search(session, q, kind, per_type, None, small)).items for kind in SEARCH_TYPES
    }
