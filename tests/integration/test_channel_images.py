"""Channel avatars and banners: upload, replace and remove through the API against a real
server with real images, who may do it, what a refused upload leaves untouched, where viewers
see the images (home cards, watch page header), and the dashboard controls in Chromium."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from storage import queries
from tests.accounts import csrf_of, register
from tests.browser.browser_support import PageWatch, browser  # noqa: F401
from tests.conftest import running_server

pytestmark = pytest.mark.integration

MAX_BYTES = 300_000
AVATAR = 128
BANNER = (600, 150)
SLUG = "alice-tv"


class User:
    """A logged-in account; ``send`` adds the CSRF token to writes."""

    def __init__(self, http: aiohttp.ClientSession, csrf: str) -> None:
        self.http = http
        self.csrf = csrf

    async def send(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        csrf: bool = True,
        field: str = "file",
    ) -> tuple[int, dict[str, Any]]:
        return await call(
            self.http, method, path, data, {"X-CSRF-Token": self.csrf} if csrf else {}, field
        )

    async def channel(self) -> dict[str, Any]:
        status, body = await self.send("GET", f"/api/channels/{SLUG}")
        assert status == 200, body
        return body


async def call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    data: bytes | None,
    headers: dict[str, str],
    field: str = "file",
) -> tuple[int, dict[str, Any]]:
    form = None
    if data is not None:
        form = aiohttp.FormData()
        form.add_field(field, data, filename="picture.png", content_type="image/png")
    async with http.request(method, path, data=form, headers=headers) as r:
        return r.status, await r.json()


@pytest.fixture
async def site(settings_env: dict[str, str]) -> AsyncIterator[tuple[Any, str, dict[str, User]]]:
    env = {
        **settings_env,
        "AETHEX_UPLOADS__MAX_BYTES": str(MAX_BYTES),
        "AETHEX_UPLOADS__MAX_PIXELS": "4000000",
        "AETHEX_UPLOADS__AVATAR_SIZE": str(AVATAR),
        "AETHEX_UPLOADS__BANNER_WIDTH": str(BANNER[0]),
        "AETHEX_UPLOADS__BANNER_HEIGHT": str(BANNER[1]),
    }
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        users: dict[str, User] = {}
        try:
            for name in ("root", "alice", "bob"):  # the first account is the admin
                http = await register(base, name)
                users[name] = User(http, await csrf_of(http, base))
            async with users["alice"].http.post(
                "/api/channels",
                json={"slug": SLUG, "name": "Alice TV"},
                headers={"X-CSRF-Token": users["alice"].csrf},
            ) as r:
                assert r.status == 201, await r.text()
            yield server, base, users
        finally:
            for user in users.values():
                await user.http.close()


def picture(size: tuple[int, int], fmt: str = "PNG", *, alpha: bool = False, **save: Any) -> bytes:
    """A real image with a gradient and stripes (the encoders get actual content)."""
    image = Image.linear_gradient("L").resize(size).convert("RGBA" if alpha else "RGB")
    for x in range(0, size[0], 16):
        image.paste((30, 180, 60) + ((200,) if alpha else ()), (x, 0, x + 3, size[1]))
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def stored(server: Any) -> set[str]:
    folder: Path = server.settings.data_dir / "uploads"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def name_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def served(http: aiohttp.ClientSession, url: str) -> tuple[Image.Image, bytes]:
    async with http.get(url) as r:
        assert r.status == 200, url
        assert r.headers["Content-Type"] in ("image/jpeg", "image/png")
        raw = await r.read()
    image = Image.open(io.BytesIO(raw))
    image.load()
    return image, raw


async def status_of(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as r:
        return r.status


# -- API -------------------------------------------------------------------------------------


async def test_owner_uploads_replaces_and_removes_avatar_and_banner(site) -> None:
    server, base, users = site
    alice = users["alice"]

    status, body = await alice.send("POST", f"/api/channels/{SLUG}/avatar", picture((900, 500)))
    assert status == 200, body
    avatar = body["url"]
    assert avatar.startswith("/uploads/avatar-") and body["channel"]["avatar_url"] == avatar
    assert (body["width"], body["height"]) == (AVATAR, AVATAR)
    assert body["channel"]["stream_key"]  # the owner's view of the channel
    image, _ = await served(alice.http, avatar)
    assert image.format == "JPEG" and image.size == (AVATAR, AVATAR)

    exif = Image.Exif()
    exif[0x010F] = "TellTaleCam"
    jpeg = picture((1200, 800), "JPEG", exif=exif.tobytes())
    assert b"TellTaleCam" in jpeg
    status, body = await alice.send("POST", f"/api/channels/{SLUG}/banner", jpeg)
    assert status == 200, body
    banner = body["url"]
    assert banner.startswith("/uploads/banner-")
    image, raw = await served(alice.http, banner)
    assert image.size == (body["width"], body["height"]) == (225, 150)  # fitted into 600x150
    assert b"TellTaleCam" not in raw
    assert stored(server) == {name_of(avatar), name_of(banner)}

    # Anyone sees both on the public channel document.
    async with aiohttp.ClientSession(base) as anon:
        status, public = await call(anon, "GET", f"/api/channels/{SLUG}", None, {})
    assert (public["avatar_url"], public["banner_url"]) == (avatar, banner)
    assert "stream_key" not in public

    # A new avatar replaces the old one, whose file goes.
    status, body = await alice.send(
        "POST", f"/api/channels/{SLUG}/avatar", picture((60, 60), alpha=True)
    )
    assert status == 200, body
    image, _ = await served(alice.http, body["url"])
    assert image.format == "PNG" and image.mode == "RGBA"  # transparency kept
    assert await status_of(alice.http, avatar) == 404
    avatar = body["url"]
    assert stored(server) == {name_of(avatar), name_of(banner)}

    # Removing the avatar leaves the banner; removing again is a no-op.
    for _ in range(2):
        status, body = await alice.send("DELETE", f"/api/channels/{SLUG}/avatar")
        assert status == 200, body
        assert body["channel"]["avatar_url"] is None
        assert body["channel"]["banner_url"] == banner
    assert await status_of(alice.http, avatar) == 404
    assert stored(server) == {name_of(banner)}
    status, body = await alice.send("DELETE", f"/api/channels/{SLUG}/banner")
    assert status == 200 and body["channel"]["banner_url"] is None
    assert stored(server) == set()
    channel = await alice.channel()
    assert channel["avatar_url"] is None and channel["banner_url"] is None


async def test_only_the_owner_or_an_admin_may_change_the_images(site) -> None:
    server, base, users = site
    alice, bob, root = users["alice"], users["bob"], users["root"]
    status, body = await alice.send("POST", f"/api/channels/{SLUG}/avatar", picture((80, 80)))
    assert status == 200
    before, files = await alice.channel(), stored(server)

    async with aiohttp.ClientSession(base) as anon:
        for method, data in (("POST", picture((80, 80))), ("DELETE", None)):
            status, body = await call(anon, method, f"/api/channels/{SLUG}/avatar", data, {})
            assert status == 401, body
    for method, data in (("POST", picture((80, 80))), ("DELETE", None)):
        status, body = await bob.send(method, f"/api/channels/{SLUG}/avatar", data)
        assert (status, body["error"]["code"]) == (403, "forbidden"), body
        # A cookie-authenticated write without the CSRF token is refused too.
        status, body = await alice.send(method, f"/api/channels/{SLUG}/avatar", data, csrf=False)
        assert status == 403, body
    status, body = await alice.send(
        "POST", "/api/channels/no-such-channel/avatar", picture((80, 80))
    )
    assert status == 404, body
    assert await alice.channel() == before and stored(server) == files

    # An admin may change anyone's channel.
    status, body = await root.send("POST", f"/api/channels/{SLUG}/banner", picture((700, 200)))
    assert status == 200, body
    assert (await alice.channel())["banner_url"] == body["url"]
    status, body = await root.send("DELETE", f"/api/channels/{SLUG}/avatar")
    assert status == 200 and body["channel"]["avatar_url"] is None
    assert name_of(before["avatar_url"]) not in stored(server)


@pytest.mark.parametrize(
    "case", ["text", "truncated", "too_many_bytes", "too_many_pixels", "no_file"]
)
async def test_a_refused_upload_changes_nothing(site, case) -> None:
    server, _, users = site
    alice = users["alice"]
    for kind in ("avatar", "banner"):
        status, _ = await alice.send("POST", f"/api/channels/{SLUG}/{kind}", picture((300, 200)))
        assert status == 200
    before, files = await alice.channel(), stored(server)

    field = "file"
    if case == "text":
        data, expected = b"just some words, not a picture\n" * 20, (400, "not_an_image")
    elif case == "truncated":
        data, expected = picture((500, 500))[:-500], (400, "damaged_image")
    elif case == "too_many_bytes":
        data = picture((460, 460), "BMP")  # ~630 kB: under the body limit, over max_bytes
        assert MAX_BYTES < len(data) < 1 << 20
        expected = (413, "file_too_large")
    elif case == "too_many_pixels":
        data, expected = picture((2600, 1600)), (413, "image_too_large")
    else:  # a good image, but not in the field named "file"
        data, field, expected = picture((50, 50)), "image", (400, "missing_field")
    for kind in ("avatar", "banner"):
        status, body = await alice.send("POST", f"/api/channels/{SLUG}/{kind}", data, field=field)
        assert (status, body["error"]["code"]) == expected, body
        assert body["error"]["message"]
    assert await alice.channel() == before
    assert stored(server) == files
    for kind in ("avatar", "banner"):
        assert await status_of(alice.http, before[f"{kind}_url"]) == 200


async def test_deleting_the_channel_removes_its_images(site) -> None:
    server, _, users = site
    alice = users["alice"]
    for kind in ("avatar", "banner"):
        status, _ = await alice.send("POST", f"/api/channels/{SLUG}/{kind}", picture((100, 100)))
        assert status == 200
    assert len(stored(server)) == 2
    async with alice.http.delete(
        f"/api/channels/{SLUG}", headers={"X-CSRF-Token": alice.csrf}
    ) as r:
        assert r.status == 204
    assert stored(server) == set()


# -- where viewers see them -------------------------------------------------------------------


async def test_home_cards_and_watch_page_show_the_channel_images(site) -> None:
    server, base, users = site
    alice = users["alice"]
    async with aiohttp.ClientSession(base) as anon:
        async with anon.get(f"/streams/{SLUG}") as r:
            page = await r.text()
        assert "/uploads/" not in page and "stream-avatar-empty" in page

        _, body = await alice.send("POST", f"/api/channels/{SLUG}/avatar", picture((90, 90)))
        avatar = body["url"]
        _, body = await alice.send("POST", f"/api/channels/{SLUG}/banner", picture((800, 200)))
        banner = body["url"]
        async with anon.get(f"/streams/{SLUG}") as r:
            assert r.status == 200
            page = await r.text()
        assert f'class="stream-avatar" id="channel-avatar" src="{avatar}"' in page
        assert f'<div class="stream-banner" aria-hidden="true"><img src="{banner}"' in page

        # The home page lists live channels only: start a stream the way ingest records one.
        channel = await alice.channel()
        async with server.db.session() as db:
            await queries.start_stream(db, channel["id"], datetime.now(UTC))
            await db.commit()
        async with anon.get("/") as r:
            home = await r.text()
        assert f'href="/streams/{SLUG}"' in home
        assert f'<img class="card-avatar" src="{avatar}"' in home

    # The dashboard shows the current images with their controls.
    async with alice.http.get("/dashboard") as r:
        dash = await r.text()
    for kind, url in (("avatar", avatar), ("banner", banner)):
        assert f'data-image-kind="{kind}" data-has-image="true"' in dash
        assert f'src="{url}"' in dash


# -- the dashboard controls, in Chromium --------------------------------------------------------


@pytest.mark.browser
async def test_dashboard_uploads_and_removes_images(site, browser, tmp_path) -> None:  # noqa: F811
    server, base, users = site
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    cookies = [
        {"name": c.key, "value": c.value, "url": base} for c in users["alice"].http.cookie_jar
    ]
    await context.add_cookies(cookies)
    page = await context.new_page()
    watch = PageWatch(page, base)
    good = tmp_path / "me.png"
    good.write_bytes(picture((400, 300)))
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"definitely not an image\n" * 10)
    try:
        await page.goto(f"{base}/dashboard")
        form = page.locator(f'#channel-{SLUG} form[data-image-kind="avatar"]')
        img = form.locator('[data-role="image"]')
        assert await img.is_hidden()

        # Nothing chosen: a message, no request.
        await form.locator('button[type="submit"]').click()
        await form.locator('[data-role="error"]').wait_for(state="visible", timeout=5_000)
        assert "Choose an image" in await form.locator('[data-role="error"]').inner_text()

        # Not an image: the API's message is shown and nothing changes.
        await form.locator('input[type="file"]').set_input_files(str(bad))
        await form.locator('button[type="submit"]').click()
        await page.wait_for_function(
            "el => el.textContent.includes('not an image')",
            arg=await form.locator('[data-role="error"]').element_handle(),
            timeout=5_000,
        )
        assert stored(server) == set()

        # A real image: the preview shows the re-encoded file.
        await form.locator('input[type="file"]').set_input_files(str(good))
        await form.locator('button[type="submit"]').click()
        await img.wait_for(state="visible", timeout=5_000)
        src = await img.get_attribute("src")
        assert src and src.startswith("/uploads/avatar-")
        await page.wait_for_function(
            "el => el.complete && el.naturalWidth === 128",
            arg=await img.element_handle(),
            timeout=5_000,
        )
        assert await form.locator('[data-role="error"]').is_hidden()
        assert (await users["alice"].channel())["avatar_url"] == src

        # Remove asks for a second click.
        remove = form.locator('[data-action="remove-image"]')
        await remove.click()
        assert (await users["alice"].channel())["avatar_url"] == src
        await remove.click()
        await img.wait_for(state="hidden", timeout=5_000)
        assert (await users["alice"].channel())["avatar_url"] is None
        assert stored(server) == set()
        watch.check()
    finally:
        await context.close()
