"""A platform's worth of rows for the discovery benchmark, written in minutes.

What it makes (``SeedSize``; the full size is the issue's): users with one shared argon2 hash
(hashing 100,000 passwords would take an hour and measure nothing); a channel per creator with
a catalogue category, a language, tags and a searchable name; channel follows skewed the way
follows are (a few channels have most of them: one has every user, for the fan-out); past
broadcasts (ended or archived, with titles, categories and durations); watch sessions of viewers;
and login sessions for the benchmark's logged-in clients (their cookies, as a login makes them).

Why set-based inserts through SQLAlchemy core (executemany in chunks, one transaction): one ORM
object per row would take the better part of an hour for 1.2 million rows; a multi-row insert
takes seconds per hundred thousand, on both databases. SQLite runs the seed with
``synchronous=OFF`` (a crash mid-seed only loses the seed). The database was upgraded by
Alembic, up to ``SEED_REVISION`` (the schema before the search migration), and is brought to
head by ``storage.upgrade`` after the seed (``prepare``): the search migration then builds its
full-text indexes from the existing rows the way it does on an upgraded server, set-based,
instead of its triggers updating an FTS5 index row by row for 1.2 million inserts (1.5 ms per
past broadcast here). From then on the triggers keep the indexes current, for the streams the
benchmark makes live too.

Nothing here is live: which channels are, and with how many viewers, is ``Seed.live``, made
live by ``benchmarks.lib.seeded_live`` inside the server process (the registry is in memory).
Deterministic: the same size and ``seed`` give the same rows (tokens and keys aside).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import MetaData, Table, bindparam, insert, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import create_engine, upgrade
from storage.db import alembic_config
from storage.models import Base, new_public_id
from storage.passwords import hash_password
from storage.queries import new_stream_key, sha256_hex

CHUNK = 20_000
# The last revision before the full-text search migration (0007): see the module docstring.
SEED_REVISION = "0006"
PASSWORD = "bench-password-1"

ADJECTIVES = (
    "swift sleepy cosmic pixel lucky brave quiet neon rusty golden silver midnight crimson "
    "frosty happy wild tiny mega retro lazy stormy velvet electric hidden"
).split()
NOUNS = (
    "otter falcon panda wizard koala raven tiger badger fox dragon lynx turtle moose yeti "
    "comet gecko walrus heron beaver mantis sparrow bison"
).split()
SUFFIXES = "TV Live Plays Studio Gaming Streams Radio Lab Arcade Kitchen Club Den".split()
# Categories an admin would add beside the starter set (games mostly, as on any such site).
EXTRA_CATEGORIES = (
    "Factorio",
    "Minecraft",
    "Elden Ring",
    "Stardew Valley",
    "Celeste",
    "Hollow Knight",
    "Counter-Strike",
    "League of Legends",
    "Dota 2",
    "Chess",
    "Valorant",
    "Fortnite",
    "Rocket League",
    "Baldur's Gate 3",
    "Terraria",
    "Super Mario 64",
    "The Legend of Zelda",
    "Dark Souls",
    "Apex Legends",
    "Kerbal Space Program",
    "Satisfactory",
    "Rimworld",
    "Slay the Spire",
    "Tetris",
    "Pokemon",
    "Animal Crossing",
)
# What broadcasts are about: words the search queries below look for (and misspell).
TOPICS = (
    "megabase day {n}",
    "hardcore survival",
    "any% speedrun attempts",
    "no-hit run",
    "chill farming",
    "ranked grind",
    "tournament practice",
    "lo-fi beats to code to",
    "piano practice",
    "synthwave production",
    "building a compiler in Rust",
    "Python web server from scratch",
    "retro hardware repair",
    "sourdough baking",
    "watercolor painting",
    "morning workout",
    "late night talk",
    "first playthrough",
    "community game night",
    "modded playthrough part {n}",
)
TAGS = (
    "english speedrun chill competitive coding music coop retro esports family-friendly "
    "no-commentary vtuber relaxing educational challenge modded"
).split()
LANGUAGES = ("en", "en", "en", "en", "es", "pt", "de", "fr", "ja", "ko", "ru", "it")
# What the clients type: whole words, prefixes, misspellings, names, several words.
QUERIES = (
    "factorio megabase minecraft speedrun piano synthwave compiler sourdough chess celeste "
    "tetris rust python workout watercolor hardcore tournament pokemon terraria rimworld "
    "fact mine spee pian synth comp sour ches cele tetr pyth work hard tour poke "
    "factroio minecarft speedrum pianno compiller sourdugh chesss celest tetirs pyhton "
    "swift sleepy cosmic otter falcon wizard neon_raven pixel midnight golden "
).split() + [
    "lo-fi beats",
    "elden ring",
    "just chatting",
    "retro gaming",
    "hollow knight no-hit",
    "stardew valley",
    "dark souls",
    "kerbal space",
    "any% speedrun",
    "late night talk",
]


@dataclass(frozen=True)
class SeedSize:
    channels: int = 10_000
    live: int = 1_000
    users: int = 100_000
    follows: int = 1_000_000
    broadcasts: int = 100_000
    watch_sessions: int = 300_000
    # Followers of the fan-out channel (every one of the first ``fanout_followers`` users).
    fanout_followers: int = 100_000
    logged_in: int = 25


FULL = SeedSize()
QUICK = SeedSize(
    channels=300,
    live=30,
    users=3_000,
    follows=30_000,
    broadcasts=3_000,
    watch_sessions=9_000,
    fanout_followers=3_000,
    logged_in=25,
)


@dataclass
class LiveChannel:
    channel_id: int
    slug: str
    title: str
    category_id: int
    viewers: int


@dataclass
class Seed:
    """What the benchmark needs to know about the rows: slugs to request, cookies to send."""

    size: SeedSize
    categories: list[str]  # slugs, the most popular first
    live: list[LiveChannel]
    sessions: list[str]  # session cookie tokens of the logged-in clients' users
    fanout_slug: str  # the channel every user follows (not live)
    fanout_key: str
    quiet_slug: str  # a channel nobody follows (not live): the fan-out's control
    quiet_key: str
    fanout_followers: int
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per table

    def save(self, path: Path) -> None:
        doc = asdict(self)
        path.write_text(json.dumps(doc))

    @classmethod
    def load(cls, path: Path) -> Seed:
        doc = json.loads(path.read_text())
        doc["size"] = SeedSize(**doc["size"])
        doc["live"] = [LiveChannel(**x) for x in doc["live"]]
        return cls(**doc)


def _chunks(n: int, size: int = CHUNK) -> Iterator[tuple[int, int]]:
    for lo in range(0, n, size):
        yield lo, min(n, lo + size)


def _zipf_weights(n: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return w / w.sum()


async def _insert(conn: AsyncConnection, table: str, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(await _seed_table(conn, table)), list(rows))


async def _seed_table(conn: AsyncConnection, name: str) -> Table:
    """The model's table with only the columns the database has at ``SEED_REVISION``: a later
    migration's new columns (with their defaults) are added by that migration, not the seed."""
    model = Base.metadata.tables[name]
    have = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns(name)})
    return Table(name, MetaData(), *(col._copy() for col in model.columns if col.name in have))


def _username(i: int) -> str:
    return f"{ADJECTIVES[i % len(ADJECTIVES)]}_{NOUNS[(i // 7) % len(NOUNS)]}{i}"


async def _categories(conn: AsyncConnection, now: datetime) -> list[tuple[int, str, str]]:
    table = Base.metadata.tables["categories"]
    have = {name for (name,) in await conn.execute(select(table.c.name))}
    slugs = {slug for (slug,) in await conn.execute(select(table.c.slug))}
    rows = []
    for name in EXTRA_CATEGORIES:
        if name in have:
            continue
        slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
        slug = "-".join(p for p in slug.split("-") if p)
        if slug in slugs:
            continue
        rows.append({"slug": slug, "name": name, "description": "", "created_at": now})
    await _insert(conn, "categories", rows)
    return [
        (cid, slug, name)
        for cid, slug, name in await conn.execute(
            select(table.c.id, table.c.slug, table.c.name)
            .where(table.c.retired_at.is_(None))
            .order_by(table.c.id)
        )
    ]


def _migrate_to(url: str, revision: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


async def prepare(url: str, size: SeedSize = FULL, rng_seed: int = 12) -> Seed:
    """An empty database at ``url`` migrated, seeded and brought to head."""
    await asyncio.to_thread(_migrate_to, url, SEED_REVISION)
    seeded = await seed(url, size, rng_seed)
    started = time.monotonic()
    await asyncio.to_thread(upgrade, url)
    seeded.phases["upgrade to head"] = time.monotonic() - started
    if "sqlite" in url:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            await engine.dispose()
    return seeded


async def seed(url: str, size: SeedSize = FULL, rng_seed: int = 12) -> Seed:
    """Fill the database at ``url`` (migrated to ``SEED_REVISION``, empty); returns what the
    benchmark needs."""
    started = time.monotonic()
    rng = np.random.default_rng(rng_seed)
    now = datetime.now(UTC).replace(microsecond=0)
    pw_hash = await asyncio.to_thread(hash_password, PASSWORD)
    engine = create_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    counts: dict[str, int] = {}
    phases: dict[str, float] = {}
    mark = [time.monotonic()]

    def phase(name: str) -> None:
        now_ = time.monotonic()
        phases[name] = now_ - mark[0]
        mark[0] = now_

    try:
        async with engine.connect() as conn:
            if sqlite:
                await conn.exec_driver_sql("PRAGMA synchronous=OFF")
                # The transaction's pages stay in memory instead of spilling into the WAL and
                # being read back for every index insert (4x the wall time with the default).
                await conn.exec_driver_sql("PRAGMA cache_size=-524288")
                await conn.commit()
            cats = await _categories(conn, now)
            counts["categories"] = len(cats)
            # Category popularity: a few big ones, a long tail (order shuffled once).
            cat_order = rng.permutation(len(cats))
            cat_w = _zipf_weights(len(cats), 1.0)

            # -- users (ids 1..users; channel owners are the first ``channels`` of them) -------
            for lo, hi in _chunks(size.users):
                await _insert(
                    conn,
                    "users",
                    [
                        {
                            "id": i + 1,
                            "username": _username(i),
                            "email": f"u{i}@bench.example",
                            "password_hash": pw_hash,
                            "is_admin": False,
                            "is_disabled": False,
                            "created_at": now - timedelta(days=int(i % 700)),
                        }
                        for i in range(lo, hi)
                    ],
                )
                await _insert(
                    conn,
                    "profiles",
                    [
                        {
                            "user_id": i + 1,
                            "display_name": (
                                f"{ADJECTIVES[i % len(ADJECTIVES)].title()} "
                                f"{NOUNS[(i // 7) % len(NOUNS)].title()}"
                            ),
                            "bio": "",
                            "social_links": {},
                            "theme": "dark",
                            "language": "en",
                        }
                        for i in range(lo, min(hi, size.channels))
                    ],
                )
            counts["users"] = size.users
            phase("users")

            # -- channels ------------------------------------------------------------------------
            ch_cat = cat_order[rng.choice(len(cats), size=size.channels, p=cat_w)]
            ch_lang = rng.choice(len(LANGUAGES), size=size.channels)
            keys: list[str] = []
            slugs: list[str] = []
            for lo, hi in _chunks(size.channels):
                rows = []
                for i in range(lo, hi):
                    cid, _, cname = cats[int(ch_cat[i])]
                    adj, noun = ADJECTIVES[i % len(ADJECTIVES)], NOUNS[(i // 7) % len(NOUNS)]
                    key = new_stream_key()
                    slug = f"{adj}-{noun}-{i}"
                    keys.append(key)
                    slugs.append(slug)
                    picked = rng.choice(len(TAGS), size=int(rng.integers(0, 4)), replace=False)
                    rows.append(
                        {
                            "id": i + 1,
                            "owner_id": i + 1,
                            "slug": slug,
                            "name": f"{adj.title()} {noun.title()} {SUFFIXES[i % len(SUFFIXES)]}",
                            "description": f"{cname} streams by a {adj} {noun}. "
                            + TOPICS[i % len(TOPICS)].format(n=i % 30 + 1),
                            "category": cname,
                            "category_id": cid,
                            "language": LANGUAGES[int(ch_lang[i])],
                            "tags": [TAGS[int(t)] for t in picked],
                            "is_public": i % 50 != 49,  # 2 % unlisted
                            "stream_key": key,
                            "stream_key_hash": sha256_hex(key),
                            "follower_count": 0,
                            "total_streams": 0,
                            "total_views": 0,
                            "created_at": now - timedelta(days=int(i % 600)),
                            "updated_at": now,
                        }
                    )
                await _insert(conn, "channels", rows)
            counts["channels"] = size.channels
            phase("channels")

            # -- follows: one channel has every user; the rest Zipf over channels ---------------
            fan_ch = 0  # channel index 0 (id 1): followed by the first fanout_followers users
            quiet_ch = size.channels - 1  # followed by nobody (excluded below)
            rest = size.follows - size.fanout_followers
            ch_pop = rng.permutation(size.channels)  # popularity rank -> channel index
            ch_w = _zipf_weights(size.channels, 0.9)
            pairs = np.empty(0, dtype=np.int64)
            need = rest
            while pairs.size < rest:
                users_ = rng.integers(0, size.users, size=int(need * 1.3) + 100)
                chans = ch_pop[rng.choice(size.channels, size=users_.size, p=ch_w)]
                ok = (chans != fan_ch) & (chans != quiet_ch)
                keys64 = users_[ok].astype(np.int64) * size.channels + chans[ok]
                pairs = np.unique(np.concatenate([pairs, keys64]))
                need = rest - pairs.size
            pairs = rng.permutation(pairs)[:rest]
            fan = np.arange(size.fanout_followers, dtype=np.int64) * size.channels + fan_ch
            # In primary-key order (user, channel): each insert lands beside the last one.
            all_pairs = np.sort(np.concatenate([fan, pairs]))
            f_user = (all_pairs // size.channels).astype(np.int64)
            f_chan = (all_pairs % size.channels).astype(np.int64)
            f_age = rng.integers(0, 400 * 86400, size=all_pairs.size)
            notify = rng.random(all_pairs.size) >= 0.05  # 5 % turned the bell off
            notify[f_chan == fan_ch] = True  # the fan-out channel: every bell on
            for lo, hi in _chunks(int(all_pairs.size), 50_000):
                await _insert(
                    conn,
                    "channel_follows",
                    [
                        {
                            "user_id": int(f_user[j]) + 1,
                            "channel_id": int(f_chan[j]) + 1,
                            "created_at": now - timedelta(seconds=int(f_age[j])),
                            "notify": bool(notify[j]),
                        }
                        for j in range(lo, hi)
                    ],
                )
            followers = np.bincount(f_chan, minlength=size.channels)
            counts["follows"] = int(all_pairs.size)
            phase("follows")

            # -- past broadcasts (ended: archived with a VOD, or offline) ------------------------
            b_chan = ch_pop[rng.choice(size.channels, size=size.broadcasts, p=ch_w)]
            b_age = rng.integers(3600, 90 * 86400, size=size.broadcasts)
            b_dur = rng.integers(600, 6 * 3600, size=size.broadcasts)
            b_vod = rng.random(size.broadcasts) < 0.7
            streams_per = np.bincount(b_chan, minlength=size.channels)
            for lo, hi in _chunks(size.broadcasts):
                rows = []
                for j in range(lo, hi):
                    c = int(b_chan[j])
                    cid, _, cname = cats[int(ch_cat[c])]
                    started_at = now - timedelta(seconds=int(b_age[j]))
                    dur = int(b_dur[j])
                    title = TOPICS[(c + j) % len(TOPICS)].format(n=j % 90 + 1)
                    rows.append(
                        {
                            "public_id": new_public_id(),
                            "channel_id": c + 1,
                            "title": f"{cname}: {title}"[:140],
                            "category": cname,
                            "category_id": cid,
                            "status": "archived" if b_vod[j] else "offline",
                            "started_at": started_at,
                            "ended_at": started_at + timedelta(seconds=dur),
                            "duration_seconds": dur,
                            "viewer_count": 0,
                            "peak_viewers": int(rng.integers(0, 500)),
                            "vod_available": bool(b_vod[j]),
                            "vod_duration_seconds": float(dur) if b_vod[j] else None,
                        }
                    )
                await _insert(conn, "streams", rows)
            counts["broadcasts"] = size.broadcasts
            phase("broadcasts")

            channels_t = Base.metadata.tables["channels"]
            ids = np.flatnonzero(followers | streams_per)
            await conn.execute(
                channels_t.update()
                .where(channels_t.c.id == bindparam("cid"))
                .values(
                    follower_count=bindparam("fc"),
                    total_streams=bindparam("ts"),
                    total_views=bindparam("tv"),
                ),
                [
                    {
                        "cid": int(c) + 1,
                        "fc": int(followers[c]),
                        "ts": int(streams_per[c]),
                        "tv": int(streams_per[c]) * 37,
                    }
                    for c in ids
                ],
            )

            phase("counts")

            # -- live channels: the popular ones more likely, never the fan-out pair ------------
            live_pool = [int(c) for c in ch_pop if c not in (fan_ch, quiet_ch) and c % 50 != 49]
            live_idx = live_pool[: size.live * 2 : 2]  # every other one of the most followed
            live = []
            for rank, c in enumerate(live_idx):
                cid, _, cname = cats[int(ch_cat[c])]
                live.append(
                    LiveChannel(
                        channel_id=c + 1,
                        slug=slugs[c],
                        title=f"{cname}: {TOPICS[(c * 3) % len(TOPICS)].format(n=c % 40 + 1)}",
                        category_id=cid,
                        viewers=int(5000 / (rank + 1) ** 0.9),  # 5000 at the top, ~10 at 1000th
                    )
                )

            # -- watch sessions: viewers watch channels (popular ones more) ----------------------
            w_user = np.sort(rng.integers(size.channels, size.users, size=size.watch_sessions))
            w_chan = ch_pop[rng.choice(size.channels, size=size.watch_sessions, p=ch_w)]
            w_age = rng.integers(60, 60 * 86400, size=size.watch_sessions)
            w_secs = rng.integers(30, 4 * 3600, size=size.watch_sessions)
            for lo, hi in _chunks(size.watch_sessions, 50_000):
                await _insert(
                    conn,
                    "watch_sessions",
                    [
                        {
                            "user_id": int(w_user[j]) + 1,
                            "channel_id": int(w_chan[j]) + 1,
                            "stream_id": None,
                            "started_at": now - timedelta(seconds=int(w_age[j])),
                            "last_seen_at": now
                            - timedelta(seconds=max(0, int(w_age[j]) - int(w_secs[j]))),
                            "watched_seconds": int(w_secs[j]),
                        }
                        for j in range(lo, hi)
                    ],
                )
            counts["watch_sessions"] = size.watch_sessions
            phase("watch_sessions")

            # -- the logged-in clients: viewers (not creators) with follows and history ---------
            tokens = [secrets.token_urlsafe(32) for _ in range(size.logged_in)]
            await _insert(
                conn,
                "sessions",
                [
                    {
                        "user_id": size.channels + 1 + k,
                        "token_hash": sha256_hex(t),
                        "created_at": now,
                        "expires_at": now + timedelta(days=7),
                    }
                    for k, t in enumerate(tokens)
                ],
            )
            await conn.commit()
            if sqlite:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            else:
                # Rows were given their ids: move the sequences past them.
                for table in ("users", "channels"):
                    await conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))"
                        )
                    )
                # What autovacuum does within a minute of a bulk load: fresh planner statistics.
                await conn.execute(text("ANALYZE"))
                await conn.commit()
            phase("commit")
    finally:
        await engine.dispose()
    pop_cats = [cats[int(i)][1] for i in cat_order]
    return Seed(
        size=size,
        categories=pop_cats,
        live=live,
        sessions=tokens,
        fanout_slug=slugs[fan_ch],
        fanout_key=keys[fan_ch],
        quiet_slug=slugs[quiet_ch],
        quiet_key=keys[quiet_ch],
        fanout_followers=size.fanout_followers,
        counts=counts,
        seconds=time.monotonic() - started,
        phases=phases,
    )
