"""Search over channels, users, categories and past broadcasts, on SQLite and PostgreSQL.

One API, two index families (created by migration 0007): FTS5 word and trigram tables on
SQLite, ``tsvector``/``pg_trgm`` expression indexes on PostgreSQL. Each search gathers
bounded sets of candidate ids from the indexes, then loads those rows with the visibility
rules and orders them in Python:

1. names that start with the query (a prefix index: FTS5 ``^`` or a btree range), so an exact
   or prefix match is never crowded out by a thousand rows that merely mention the word;
2. rows whose text has every word of the query (word prefixes), capped at ``candidates`` in
   an order the index serves cheaply (channels: live, then followers);
3. only when those are few (under ``fuzzy_below``): the words of the vocabulary (the
   ``search_terms`` table, trigram-indexed) within a small edit distance of the query's words,
   and the rows that have those instead (``search_text.corrections``).

Order: match tier (exact, prefix, text, typo), then live before offline and more followers
first (channels), then how many of the query's words the name has, then id. Unlisted
channels, their broadcasts, disabled users and their channels, and retired categories are
never returned. Pagination is a keyset cursor on that order, so a page never repeats or
skips a row of an unchanged result.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Integer, and_, bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import TextClause

from storage import search_text as st
from storage import videos
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
    candidates: int = 50
    # Typo tolerance runs when the exact and word matches found fewer rows than this...
    fuzzy_below: int = 10
    # ...and looks at most this many vocabulary words up per misspelt word.
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
    found: set[int] = field(default_factory=set)  # by the query's own words
    fuzzy: set[int] = field(default_factory=set)  # only by the words typos were taken for
    close: dict[str, list[str]] = field(default_factory=dict)  # those words

    def add(self, rows: Sequence[Any]) -> None:
        self.found.update(row[0] for row in rows)


@functools.cache
def _sql(statement: str) -> TextClause:
    """The TextClause of one of this module's statements, made once."""
    return text(statement)


def _alternatives(qwords: list[str], close: dict[str, list[str]]) -> list[list[str]]:
    return [[w, *close.get(w, [])] for w in qwords]


# -- SQLite --------------------------------------------------------------------------------

# No bm25 (``rank``) here: computing it costs every matching row its positions, twenty times
# the cost of the match itself. Rows come in rowid order (the index's own, so LIMIT stops
# early); the text score is computed on the few hundred rows kept.
_SQLITE_TEXT = {
    "channels": """SELECT c.id FROM search_channels f JOIN channels c ON c.id = f.rowid
        WHERE search_channels MATCH :m AND c.is_public = 1
        ORDER BY EXISTS (SELECT 1 FROM streams s WHERE s.channel_id = c.id
                         AND s.status = 'live') DESC, c.follower_count DESC, c.id LIMIT :cap""",
    "users": """SELECT f.rowid FROM search_users f
        WHERE search_users MATCH :m ORDER BY f.rowid LIMIT :cap""",
    "categories": """SELECT f.rowid FROM search_categories f
        WHERE search_categories MATCH :m ORDER BY f.rowid LIMIT :cap""",
    "videos": """SELECT f.rowid FROM search_videos f
        WHERE search_videos MATCH :m ORDER BY f.rowid DESC LIMIT :cap""",
}
_SQLITE_NAME_COLUMNS = {
    "channels": ("name", "slug"),
    "users": ("username", "display_name"),
    "categories": ("name",),
    "videos": ("title",),
}
_SQLITE_INITIAL = {
    kind: f"SELECT f.rowid FROM search_{kind} f WHERE search_{kind} MATCH :m "
    + ("ORDER BY f.rowid DESC" if kind == "videos" else "ORDER BY f.rowid")
    + " LIMIT :cap"
    for kind in SEARCH_TYPES
}
# Both in one statement (one trip to the database thread instead of two).
_SQLITE_CANDIDATES = {
    kind: "SELECT * FROM (" + _SQLITE_INITIAL[kind].replace(":m", ":mi") + ") UNION "
    "SELECT * FROM (" + _SQLITE_TEXT[kind] + ")"
    for kind in SEARCH_TYPES
}
# Words of the vocabulary sharing grams with a misspelt word, the most similar first.
_SQLITE_TERMS = """SELECT t.term FROM search_terms_fuzzy f JOIN search_terms t ON t.id = f.rowid
    WHERE search_terms_fuzzy MATCH :m ORDER BY f.rank LIMIT :cap"""


async def _sqlite_close_words(
    session: AsyncSession, qwords: list[str], limits: SearchLimits
) -> dict[str, list[str]]:
    close: dict[str, list[str]] = {}
    for i, w in enumerate(qwords):
        m = st.fuzzy_fts_match([w])
        if m is None:
            continue
        rows = await session.execute(_sql(_SQLITE_TERMS), {"m": m, "cap": limits.fuzzy_candidates})
        close[w] = st.corrections(w, [row[0] for row in rows], last=i == len(qwords) - 1)
    return close


async def _sqlite_candidates(
    session: AsyncSession, kind: str, query: str, qwords: list[str], limits: SearchLimits
) -> _Candidates:
    found = _Candidates()
    cap = limits.candidates
    params = {
        "mi": st.fts_initial(qwords, _SQLITE_NAME_COLUMNS[kind]),
        "m": st.fts_match(qwords),
        "cap": cap,
    }
    found.add((await session.execute(_sql(_SQLITE_CANDIDATES[kind]), params)).all())
    # (A channel's slug is one of the name columns the initial query anchors on.)
    if len(found.found) < limits.fuzzy_below:
        close = found.close = await _sqlite_close_words(session, qwords, limits)
        if any(close.values()):
            m = st.fts_match_any(_alternatives(qwords, close))
            rows = await session.execute(_sql(_SQLITE_TEXT[kind]), {"m": m, "cap": cap})
            found.fuzzy = {row[0] for row in rows} - found.found
    return found


# -- PostgreSQL ----------------------------------------------------------------------------

# The very expressions of migration 0007's indexes, or the planner cannot use them.
_PG_CHANNEL_DOCUMENT = (
    "to_tsvector('simple', c.name || ' ' || c.slug || ' ' || c.description || ' ' || "
    "coalesce(c.tags::text, ''))"
)
# ``id + 0`` keeps the planner from walking the primary key in order and testing every row
# against the text (fast when most rows match, a full scan when few do): the GIN index finds
# the matches, then the few hundred wanted are sorted. No ts_rank: it would parse the text of
# every match again; the text score is computed on the rows kept.
_PG_TEXT = {
    "channels": f"""SELECT c.id FROM channels c
        WHERE {_PG_CHANNEL_DOCUMENT} @@ to_tsquery('simple', :m) AND c.is_public
        ORDER BY EXISTS (SELECT 1 FROM streams s WHERE s.channel_id = c.id
                         AND s.status = 'live') DESC, c.follower_count DESC, c.id + 0
        LIMIT :cap""",
    # The title of a channel's live or latest broadcast (search_channel_titles, kept by a
    # trigger on streams).
    "channel_titles": """SELECT c.id FROM search_channel_titles t
        JOIN channels c ON c.id = t.channel_id
        WHERE to_tsvector('simple', t.title) @@ to_tsquery('simple', :m) AND c.is_public
        ORDER BY EXISTS (SELECT 1 FROM streams s WHERE s.channel_id = c.id
                         AND s.status = 'live') DESC, c.follower_count DESC, c.id + 0
        LIMIT :cap""",
    "users": """(SELECT u.id FROM users u
          WHERE to_tsvector('simple', u.username) @@ to_tsquery('simple', :m)
          ORDER BY u.id + 0 LIMIT :cap)
        UNION
        (SELECT p.user_id FROM profiles p
          WHERE to_tsvector('simple', p.display_name) @@ to_tsquery('simple', :m)
          ORDER BY p.user_id + 0 LIMIT :cap)""",
    "categories": """SELECT c.id FROM categories c
        WHERE to_tsvector('simple', c.name) @@ to_tsquery('simple', :m)
        ORDER BY c.id + 0 LIMIT :cap""",
    "videos": """SELECT s.id FROM streams s
        WHERE to_tsvector('simple', s.title) @@ to_tsquery('simple', :m)
        ORDER BY s.id + 0 DESC LIMIT :cap""",
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
# Everything a search starts from, in one statement (one round trip instead of four).
_PG_CANDIDATES = {
    kind: " UNION ".join(
        f"({sql})"
        for sql in (
            _PG_PREFIX[kind],
            _PG_TEXT[kind],
            *(
                (_PG_TEXT["channel_titles"], "SELECT id FROM channels WHERE slug = :slug")
                if kind == "channels"
                else ()
            ),
        )
    )
    for kind in SEARCH_TYPES
}
# Words of the vocabulary trigram-similar to a misspelt one (pg_trgm ``%``, GIN-indexed).
_PG_TERMS = """SELECT term FROM search_terms WHERE term % :w
    ORDER BY similarity(term, :w) DESC, term LIMIT :cap"""
# Lower than pg_trgm's default (0.3): a typo in the last letters of an unfinished word
# ("factroi" for "factorio") leaves about 0.3. The edit distance in Python has the last word.
PG_SIMILARITY = 0.2


async def _pg_close_words(
    session: AsyncSession, qwords: list[str], limits: SearchLimits
) -> dict[str, list[str]]:
    close: dict[str, list[str]] = {}
    typos = [w for w in qwords if st.allowed_typos(w)]
    if not typos:
        return close
    await session.execute(
        _sql("SELECT set_config('pg_trgm.similarity_threshold', :t, true)"),
        {"t": str(PG_SIMILARITY)},
    )
    for i, w in enumerate(qwords):
        if w not in typos:
            continue
        rows = await session.execute(_sql(_PG_TERMS), {"w": w, "cap": limits.fuzzy_candidates})
        close[w] = st.corrections(w, [row[0] for row in rows], last=i == len(qwords) - 1)
    return close


async def _pg_text(session: AsyncSession, kind: str, tsq: str, cap: int) -> list[Any]:
    rows = list((await session.execute(_sql(_PG_TEXT[kind]), {"m": tsq, "cap": cap})).all())
    if kind == "channels":
        more = await session.execute(_sql(_PG_TEXT["channel_titles"]), {"m": tsq, "cap": cap})
        rows += list(more.all())
    return rows


async def _pg_candidates(
    session: AsyncSession, kind: str, query: str, qwords: list[str], limits: SearchLimits
) -> _Candidates:
    found = _Candidates()
    cap = limits.candidates
    lo, hi = st.prefix_range(query) or ("", "")  # ("", ""): an empty range
    params = {"lo": lo, "hi": hi, "m": st.ts_query(qwords), "cap": cap}
    if kind == "channels":
        params["slug"] = st.printable(query).strip().lower()
    found.add((await session.execute(_sql(_PG_CANDIDATES[kind]), params)).all())
    if len(found.found) < limits.fuzzy_below:
        close = found.close = await _pg_close_words(session, qwords, limits)
        if any(close.values()):
            tsq = st.ts_query_any(_alternatives(qwords, close))
            found.fuzzy = {row[0] for row in await _pg_text(session, kind, tsq, cap)} - found.found
    return found


# -- loading and ordering ------------------------------------------------------------------


def _among(column: Any, pg: bool) -> Any:
    """``column`` is one of the ``ids`` parameter: ``= ANY(array)`` on PostgreSQL (one
    prepared statement whatever the count; an IN list of n parameters is a statement, and a
    plan, per n), an expanding IN elsewhere."""
    if pg:
        return column == func.any(bindparam("ids", type_=ARRAY(Integer)))
    return column.in_(bindparam("ids", expanding=True))


def _is_pg(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# A loaded hit, its names (what exact and prefix matches are judged on) and its other short
# texts (a channel's title and tags: enough for a typo match, not for a name match).
_Loaded = tuple[Any, list[str], list[str]]


def _enabled_owner() -> Any:
    """The channel owner's username, NULL when the account is disabled. A lookup per row by
    primary key: joining users let PostgreSQL merge-join along their whole index."""
    return (
        select(User.username)
        .where(User.id == Channel.owner_id, User.is_disabled.is_(False))
        .scalar_subquery()
    )


@functools.cache
def _channels_statement(pg: bool) -> Any:
    live = aliased(Stream)
    # The live title, else the newest broadcast's (the channel's index on started_at, read
    # backwards, one row).
    last_title = func.coalesce(
        live.title,
        select(Stream.title)
        .where(Stream.channel_id == Channel.id, Stream.started_at.is_not(None))
        .order_by(Stream.started_at.desc())
        .limit(1)
        .scalar_subquery(),
    )
    return (
        select(
            Channel.id,
            Channel.slug,
            Channel.name,
            Channel.tags,
            Channel.follower_count,
            Channel.avatar_path,
            Channel.category,
            _enabled_owner(),
            Category.name,
            live.id,
            live.viewer_count,
            last_title,
        )
        .outerjoin(Category, Category.id == Channel.category_id)
        .outerjoin(live, and_(live.channel_id == Channel.id, live.status == StreamStatus.LIVE))
        .where(_among(Channel.id, pg), Channel.is_public.is_(True))
    )


async def _channels(session: AsyncSession, ids: list[int]) -> dict[int, _Loaded]:
    rows = await session.execute(_channels_statement(_is_pg(session)), {"ids": ids})
    out: dict[int, _Loaded] = {}
    for r in rows:
        if r[7] is None:  # a disabled owner's
            continue
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
        out[hit.id] = (hit, [hit.name, hit.slug], [hit.title, *hit.tags])
    return out


@functools.cache
def _users_statement(pg: bool) -> Any:
    return (
        select(User.id, User.username, Profile.display_name, Profile.avatar_path)
        .outerjoin(Profile, Profile.user_id == User.id)
        .where(_among(User.id, pg), User.is_disabled.is_(False))
    )


async def _users(session: AsyncSession, ids: list[int]) -> dict[int, _Loaded]:
    rows = await session.execute(_users_statement(_is_pg(session)), {"ids": ids})
    out: dict[int, _Loaded] = {}
    for r in rows:
        hit = UserHit(id=r[0], username=r[1], display_name=r[2] or r[1], avatar_path=r[3])
        out[hit.id] = (hit, [hit.username, hit.display_name], [])
    return out


@functools.cache
def _categories_statement(pg: bool) -> Any:
    return select(Category.id, Category.slug, Category.name, Category.box_art_path).where(
        _among(Category.id, pg), Category.retired_at.is_(None)
    )


async def _categories(session: AsyncSession, ids: list[int]) -> dict[int, _Loaded]:
    rows = await session.execute(_categories_statement(_is_pg(session)), {"ids": ids})
    out: dict[int, _Loaded] = {}
    for r in rows:
        hit = CategoryHit(id=r[0], slug=r[1], name=r[2], box_art_path=r[3])
        out[hit.id] = (hit, [hit.name], [])
    return out


@functools.cache
def _videos_statement(pg: bool) -> Any:
    return (
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
            _enabled_owner(),
        )
        .join(Channel, Channel.id == Stream.channel_id)
        .outerjoin(Category, Category.id == Stream.category_id)
        .where(_among(Stream.id, pg), Channel.is_public.is_(True), videos.listed_clause())
    )


async def _videos(session: AsyncSession, ids: list[int]) -> dict[int, _Loaded]:
    rows = await session.execute(_videos_statement(_is_pg(session)), {"ids": ids})
    out: dict[int, _Loaded] = {}
    for r in rows:
        # Checked here, not in SQL: SQLite would walk the status index (every past broadcast)
        # instead of looking up the few hundred ids.
        if r[12] not in PAST or r[13] is None:  # live, or a disabled owner's
            continue
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
        out[hit.id] = (hit, [hit.title], [])
    return out


_LOADERS: dict[str, Any] = {
    "channels": _channels,
    "users": _users,
    "categories": _categories,
    "videos": _videos,
}


def _key(kind: str, hit: Any, tier: int, score: int) -> tuple[int, ...]:
    if kind == "channels":
        return (tier, 0 if hit.live else 1, -hit.followers, -score, hit.id)
    if kind == "videos":
        return (tier, -score, -hit.id)
    return (tier, -score, hit.id)


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
    ids = sorted(found.found | found.fuzzy)
    if not ids:
        return SearchPage()
    loaded = await _LOADERS[kind](session, ids)
    keyed = []
    for hit_id, (hit, names, others) in loaded.items():
        if hit_id in found.found:
            tier = st.tier(qwords, names)
        else:
            fuzzy = st.fuzzy_tier(qwords, found.close, names, others)
            if fuzzy is None:
                continue
            tier = fuzzy
        keyed.append((_key(kind, hit, tier, st.name_score(qwords, names)), hit))
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
