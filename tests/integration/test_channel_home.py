"""The channel's home (``/streams/{slug}`` while offline), public profiles (``/u/{username}``)
and the cards a shared link unfurls into, against a real server with a real SQLite file.

Past broadcasts are written through the storage layer the way the broadcast writes them
(start, end, archive with a VOD, a thumbnail of their own); pages are read with a real HTTP
client and parsed with ``html.parser``, so "never rendered as an href" is checked on what a
browser would see, not on a substring.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update

from storage import queries
from storage.discovery_models import Category
from storage.models import Channel, Profile, Stream, StreamStatus, User
from tests.accounts import csrf_of, register
from tests.conftest import make_channel, make_source, push, rtmp_url, running_server, transcoding

pytestmark = pytest.mark.integration

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"
HOSTILE = "He said \"hi\" <script>alert(1)</script> & 'bye'"
UNSAFE_LINKS = {
    "website": "javascript:alert(1)",
    "twitter": "data:text/html,<script>alert(1)</script>",
    "youtube": "JaVaScRiPt:alert(2)",
    "twitch": "java\tscript:alert(3)",
    "instagram": "vbscript:msgbox(1)",
    "mastodon": "//evil.example/x",
}
SAFE_LINK = "https://github.com/alice?tab=repos&x=1"


@dataclass
class Page:
    """What a browser would take from a page: every element's attributes and the text."""

    elements: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    text: str = ""

    def attrs(self, tag: str, **match: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.elements
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in match.items())
        ]

    def meta(self) -> dict[str, str]:
        out = {}
        for a in self.attrs("meta"):
            key = a.get("property") or a.get("name")
            if key:
                out[key] = a.get("content", "")
        return out

    def hrefs(self) -> list[str]:
        return [a["href"] for t, a in self.elements if "href" in a]


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.page.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self._text.append(data)


def parse(html: str) -> Page:
    parser = _Parser()
    parser.feed(html)
    parser.close()
    parser.page.text = " ".join(" ".join(parser._text).split())
    return parser.page


async def get_page(http: aiohttp.ClientSession, path: str, **kw: Any) -> tuple[int, str]:
    async with http.get(path, **kw) as r:
        return r.status, await r.text()


async def past_stream(
    server: Any,
    channel_id: int,
    *,
    title: str,
    started: datetime,
    seconds: int,
    vod: bool = False,
    thumbnail: bool = False,
) -> Stream:
    """An ended broadcast as the broadcast leaves it: ARCHIVED with a VOD, or OFFLINE."""
    async with server.db.session() as db:
        row = await queries.start_stream(db, channel_id, started, title=title)
        status = StreamStatus.ARCHIVED if vod else StreamStatus.OFFLINE
        await queries.end_stream(db, row.id, started + timedelta(seconds=seconds), status)
        if vod:
            row.vod_available, row.vod_duration_seconds = True, float(seconds)
        if thumbnail:
            row.thumbnail_path = f"thumbnails/streams/{row.id}.jpg"
            path = server.settings.data_dir / row.thumbnail_path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(JPEG)
        await db.commit()
        await db.refresh(row)
        return row


async def dress(server: Any, slug: str, username: str, **channel: Any) -> int:
    """A channel with a catalogue category, a language and its owner's saved links (unsafe
    ones written straight into the row, as an old or hand-edited row might hold them)."""
    channel_id, _ = await make_channel(server, slug, username)
    async with server.db.session() as db:
        category = await db.scalar(select(Category).where(Category.name == "Speedrunning"))
        assert category is not None
        values = {"category_id": category.id, "language": "en", **channel}
        await db.execute(update(Channel).where(Channel.id == channel_id).values(**values))
        user = await queries.get_user_by_username(db, username)
        assert user is not None
        links = {**UNSAFE_LINKS, "github": SAFE_LINK}
        await db.execute(
            update(Profile)
            .where(Profile.user_id == user.id)
            .values(display_name="Alice <Liddell>", bio="Speedruns & tea.", social_links=links)
        )
        await db.commit()
    return channel_id


@pytest.fixture
async def site(settings_env):
    env = {**settings_env, "AETHEX_CHANNEL_PAGE__PAST_BROADCASTS_PER_PAGE": "2"}
    async with running_server(env) as server:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{server.http_port}") as http:
            yield server, http


def assert_links_safe(page: Page) -> None:
    for href in page.hrefs():
        scheme = href.split(":", 1)[0].lower() if ":" in href else ""
        assert scheme in ("", "http", "https", "mailto"), href
        assert not href.startswith("//"), href
    for a in page.attrs("a"):
        if a["href"].startswith("http") and "127.0.0.1" not in a["href"]:
            assert a.get("rel") == "nofollow noopener ugc" and a.get("target") == "_blank", a


async def test_offline_home_shows_the_channel_and_its_past_broadcasts(site) -> None:
    server, http = site
    channel_id = await dress(server, "alice-runs", "alice", description="Any% runs\nevery week")
    now = datetime.now(UTC).replace(microsecond=0)
    old = await past_stream(
        server, channel_id, title="First run", started=now - timedelta(days=3), seconds=3723
    )
    recorded = await past_stream(
        server,
        channel_id,
        title="Best run <ever>",
        started=now - timedelta(hours=5),
        seconds=95,
        vod=True,
        thumbnail=True,
    )

    status, html = await get_page(http, "/streams/alice-runs")
    assert status == 200
    page = parse(html)
    text = page.text
    assert "Any% runs" in text and "Speedrunning" in text and "English" in text
    assert page.attrs("a", href="/categories/speedrunning")
    assert "Alice <Liddell> is offline" in text  # escaped in the source, text in the page
    assert "<Liddell>" not in html
    assert "Last live 4 hours ago" in text  # the archived one ended 95 s after 5 h ago
    # Newest first, each with its duration and date; only the one with a VOD links to it.
    assert text.index("Best run <ever>") < text.index("First run")
    assert "1:35" in text and "1:02:03" in text
    assert page.attrs("a", href=f"/videos/{recorded.id}")
    assert not page.attrs("a", href=f"/videos/{old.id}")
    assert "no recording" in text
    thumbs = [a["src"] for a in page.attrs("img") if a["src"].startswith("/thumbnails/streams/")]
    assert thumbs == [f"/thumbnails/streams/{recorded.id}.jpg"]
    async with http.get(thumbs[0]) as r:
        assert r.status == 200 and await r.read() == JPEG
        assert r.headers["Cache-Control"].startswith("public")
    async with http.get(f"/thumbnails/streams/{old.id}.jpg") as r:
        assert r.status == 404  # it kept no thumbnail of its own

    # The owner's links: the safe one as an external link, the unsafe ones nowhere.
    assert page.attrs("a", href=SAFE_LINK, rel="nofollow noopener ugc", target="_blank")
    assert_links_safe(page)
    for unsafe in UNSAFE_LINKS.values():
        assert unsafe not in html
    assert page.attrs("a", href="/u/alice")  # the creator's name leads to their profile
    assert page.attrs("button", id="share-button")
    assert page.attrs("p", id="share-status") or page.attrs("span", id="share-status")


async def test_past_broadcasts_page_by_cursor_and_bad_cursors_are_400(site) -> None:
    server, http = site
    channel_id, _ = await make_channel(server, "many-runs", "bob")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    titles = []
    # Two share a start time to the microsecond: the keyset must neither skip nor repeat one.
    for i, offset in enumerate((0, 60, 60, 120, 180)):
        title = f"Run {i}"
        titles.append(title)
        await past_stream(
            server, channel_id, title=title, started=base + timedelta(minutes=offset), seconds=30
        )
    async with server.db.session() as db:  # a live stream is not a past broadcast
        await queries.start_stream(db, channel_id, base + timedelta(days=1), title="On air")
        await db.commit()

    seen: list[str] = []
    path: str | None = "/streams/many-runs"
    pages = 0
    while path:
        status, html = await get_page(http, path)
        assert status == 200, html
        page = parse(html)
        cards = [t for t in titles if f" {t} " in f" {page.text} "]
        assert 1 <= len(cards) <= 2, cards
        seen += sorted(cards, key=page.text.index)
        older = page.attrs("a", id="older-broadcasts")
        path = older[0]["href"].split("#")[0] if older else None
        if path:
            assert "?before=" in path
        pages += 1
        assert pages <= 3
    assert "On air" not in seen
    assert sorted(seen) == sorted(titles) and len(seen) == 5
    assert seen[0] == "Run 4" and seen[-1] == "Run 0"

    for bad in ("x", "1.short", "99999999999999999999.AAAAAAAAAAAAAAAAAAAAAA", "-1.a", ""):
        async with http.get("/streams/many-runs", params={"before": bad}) as r:
            assert r.status == 400, (bad, r.status)
            assert "before" in await r.text()


async def test_unlisted_channel_links_its_broadcasts_by_public_id_only(site) -> None:
    server, http = site
    channel_id = await dress(server, "secret-runs", "carol", is_public=False)
    row = await past_stream(
        server,
        channel_id,
        title="Hidden run",
        started=datetime.now(UTC) - timedelta(days=1),
        seconds=10,
        vod=True,
        thumbnail=True,
    )
    status, html = await get_page(http, "/streams/secret-runs")
    assert status == 200  # reachable by its link, as before
    page = parse(html)
    assert page.attrs("a", href=f"/videos/{row.public_id}")
    assert page.attrs("img", src=f"/thumbnails/streams/{row.public_id}.jpg")
    # Not one href or src names it by its sequential id (a public id may start with digits).
    refs = page.hrefs() + [a["src"] for a in page.attrs("img")]
    assert f"/videos/{row.id}" not in refs and f"/thumbnails/streams/{row.id}.jpg" not in refs
    assert not [r for r in refs if r.rstrip("/").endswith(f"/{row.id}")]
    assert page.attrs("meta", name="robots", content="noindex")
    async with http.get(f"/thumbnails/streams/{row.public_id}.jpg") as r:
        assert r.status == 200 and r.headers["Cache-Control"].startswith("private")
    async with http.get(f"/thumbnails/streams/{row.id}.jpg") as r:
        assert r.status == 404  # the sequential id reaches nothing for a visitor


async def test_open_graph_tags_are_absolute_and_escaped(site, settings_env) -> None:
    server, http = site
    channel_id = await dress(server, "og-test", "dave", name=HOSTILE, description=HOSTILE)
    port = server.http_port
    status, html = await get_page(http, "/streams/og-test")
    assert status == 200
    assert "<script>alert" not in html
    meta = parse(html).meta()
    assert meta["og:title"] == HOSTILE == meta["twitter:title"]
    assert meta["og:description"] == HOSTILE
    assert meta["og:url"] == f"http://127.0.0.1:{port}/streams/og-test"
    assert meta["og:type"] == "profile" and "og:image" not in meta
    assert meta["twitter:card"] == "summary"
    assert parse(html).attrs("link", rel="canonical", href=meta["og:url"])
    assert parse(html).attrs("button", id="share-button")[0]["data-url"] == meta["og:url"]

    # Without http.trust_forwarded_for, a client's forwarded headers are not believed.
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "live.example.org"}
    _, html = await get_page(http, "/streams/og-test", headers=forwarded)
    assert parse(html).meta()["og:url"] == f"http://127.0.0.1:{port}/streams/og-test"
    # A Host that is no host name is never echoed.
    _, html = await get_page(http, "/streams/og-test", headers={"Host": 'a b"c'})
    assert parse(html).meta()["og:url"] == "http://localhost/streams/og-test"

    # Live with a thumbnail: the card is the video's, with the live frame as its image.
    thumbs = server.settings.data_dir / "thumbnails"
    thumbs.mkdir(parents=True, exist_ok=True)
    (thumbs / "og-test.jpg").write_bytes(JPEG)
    now = datetime.now(UTC)
    async with server.db.session() as db:
        row = await queries.start_stream(db, channel_id, now, title="Live <now>")
        await db.commit()
    live = server.registry.start(
        channel_id=channel_id, slug="og-test", stream_id=row.id, started_at=now
    )
    try:
        _, html = await get_page(http, "/streams/og-test")
        meta = parse(html).meta()
        assert meta["og:type"] == "video.other" and meta["twitter:card"] == "summary_large_image"
        assert meta["og:title"].startswith("Live <now> · ")
        assert meta["og:image"].startswith(f"http://127.0.0.1:{port}/thumbnails/og-test.jpg?v=")
    finally:
        server.registry.end(live)


async def test_forwarded_scheme_and_host_count_behind_a_trusted_proxy(settings_env) -> None:
    env = {**settings_env, "AETHEX_HTTP__TRUST_FORWARDED_FOR": "true"}
    async with running_server(env) as server:
        await make_channel(server, "proxied", "erin")
        async with aiohttp.ClientSession(f"http://127.0.0.1:{server.http_port}") as http:
            headers = {
                "X-Forwarded-Proto": "http, https",
                "X-Forwarded-Host": "spoofed.example, live.example.org",
            }
            _, html = await get_page(http, "/streams/proxied", headers=headers)
            assert parse(html).meta()["og:url"] == "https://live.example.org/streams/proxied"
            _, html = await get_page(http, "/u/erin", headers=headers)
            assert parse(html).meta()["og:url"] == "https://live.example.org/u/erin"
            bad = {"X-Forwarded-Proto": "javascript", "X-Forwarded-Host": "<evil>"}
            _, html = await get_page(http, "/streams/proxied", headers=bad)
            assert parse(html).meta()["og:url"].startswith("http://localhost/")


async def test_public_profile_and_its_404s(site) -> None:
    server, http = site
    await dress(server, "alice-main", "alice")
    async with server.db.session() as db:
        alice = await queries.get_user_by_username(db, "alice")
        assert alice is not None
        await queries.create_channel(db, "alice", "alice-secret")
        await queries.create_channel(db, "alice", "alice-second")
        await db.execute(
            update(Channel).where(Channel.slug == "alice-secret").values(is_public=False)
        )
        await db.commit()
        second = await queries.get_channel_by_slug(db, "alice-second")
        assert second is not None
        row = await queries.start_stream(db, second.id, datetime.now(UTC))
        await db.commit()
    live = server.registry.start(
        channel_id=second.id, slug="alice-second", stream_id=row.id, started_at=row.started_at
    )
    try:
        status, html = await get_page(http, "/u/alice")
    finally:
        server.registry.end(live)
    assert status == 200
    page = parse(html)
    assert "Alice <Liddell>" in page.text and "@alice" in page.text
    assert "Speedruns & tea." in page.text
    slugs = [a["data-slug"] for a in page.attrs("a") if "data-slug" in a]
    assert slugs == ["alice-second", "alice-main"]  # live first; the unlisted one never
    assert "alice-secret" not in html
    assert page.attrs("a", href=SAFE_LINK, rel="nofollow noopener ugc", target="_blank")
    assert_links_safe(page)
    for unsafe in UNSAFE_LINKS.values():
        assert unsafe not in html
    meta = page.meta()
    assert meta["og:type"] == "profile" and meta["profile:username"] == "alice"
    assert meta["og:title"] == "Alice <Liddell> (@alice)"
    assert meta["og:url"] == f"http://127.0.0.1:{server.http_port}/u/alice"
    assert page.attrs("button", id="share-button")[0]["data-url"] == meta["og:url"]
    assert page.attrs("link", rel="canonical", href=meta["og:url"])

    async with server.db.session() as db:
        await db.execute(update(User).where(User.id == alice.id).values(is_disabled=True))
        await db.commit()
    for path in ("/u/alice", "/u/nobody", "/u/Bad-Name", "/u/" + "x" * 40):
        status, html = await get_page(http, path)
        assert status == 404, path
        assert "Not found" in html and "There is no user" in html


async def test_unsafe_links_are_refused_when_saved(site) -> None:
    server, http = site
    base = f"http://127.0.0.1:{server.http_port}"
    async with await register(base, "frank") as frank:
        headers = {"X-CSRF-Token": await csrf_of(frank, base)}
        refused = [
            *UNSAFE_LINKS.values(),
            'https://"><script>alert(1)</script>',
            "https:\\\\evil.example",
            "mailto:x@example.org",  # not a network link
            "ftp://example.org/",
        ]
        for url in refused:
            async with frank.patch(
                f"{base}/api/auth/profile", json={"social_links": {"website": url}}, headers=headers
            ) as r:
                assert r.status == 400, url
                assert (await r.json())["error"]["message"]
        # The form refuses it too and saves nothing.
        form = {
            "csrf_token": headers["X-CSRF-Token"],
            "display_name": "Frank",
            "bio": "",
            "theme": "dark",
            "language": "en",
            "social_website": "javascript:alert(1)",
        }
        async with frank.post(f"{base}/dashboard/profile", data=form) as r:
            assert r.status == 400
        async with frank.patch(
            f"{base}/api/auth/profile",
            json={"social_links": {"website": "https://frank.example/"}},
            headers=headers,
        ) as r:
            assert r.status == 200
    status, html = await get_page(http, "/u/frank")
    assert status == 200
    page = parse(html)
    assert page.attrs("a", href="https://frank.example/", rel="nofollow noopener ugc")
    assert "javascript:" not in html


async def test_a_real_broadcast_keeps_its_own_thumbnail(settings_env, tmp_path) -> None:
    """ffmpeg publishes, the server transcodes and records; once archived, the channel home
    lists the broadcast with its recording and its own last frame, which stays its own when
    the channel's live thumbnail is replaced."""
    source = make_source(tmp_path / "src.flv", size="640x360", seconds=4)
    async with running_server(transcoding(settings_env)) as server:
        _, key = await make_channel(server, "real-runs", "gail")
        proc = await push(source, rtmp_url(server, key))
        await asyncio.wait_for(proc.communicate(), 60)
        deadline = time.monotonic() + 90
        while True:
            async with server.db.session() as db:
                row = await db.scalar(select(Stream).order_by(Stream.id.desc()).limit(1))
            if row is not None and row.status is StreamStatus.ARCHIVED:
                break
            assert time.monotonic() < deadline, f"never archived: {row}"
            await asyncio.sleep(0.2)
        assert row.thumbnail_path == f"thumbnails/streams/{row.id}.jpg"
        own = server.settings.data_dir / row.thumbnail_path
        frame = own.read_bytes()
        assert frame[:2] == b"\xff\xd8"
        # The channel's live thumbnail is rewritten by its next stream; this copy is not.
        (server.settings.data_dir / "thumbnails" / "real-runs.jpg").write_bytes(JPEG)

        async with aiohttp.ClientSession(f"http://127.0.0.1:{server.http_port}") as http:
            status, html = await get_page(http, "/streams/real-runs")
            assert status == 200
            page = parse(html)
            assert page.attrs("a", href=f"/videos/{row.id}")
            assert page.attrs("img", src=f"/thumbnails/streams/{row.id}.jpg")
            # Its duration as the row has it: m:ss of the seconds the publisher was on.
            assert row.duration_seconds is not None and row.duration_seconds >= 3
            minutes, seconds = divmod(row.duration_seconds, 60)
            assert f"{minutes}:{seconds:02d}" in page.text
            async with http.get(f"/thumbnails/streams/{row.id}.jpg") as r:
                assert r.status == 200 and await r.read() == frame
            async with http.get(f"/thumbnails/streams/{row.public_id}.jpg") as r:
                assert r.status == 200 and await r.read() == frame
