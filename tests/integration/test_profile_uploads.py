"""Profile API, API tokens and avatar/banner uploads against a real server and real images."""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import zlib
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from tests.accounts import csrf_of, register, user_of
from tests.conftest import running_server
from webapp.uploads import DECODE_GATE_KEY

pytestmark = pytest.mark.integration

MAX_BYTES = 300_000


@pytest.fixture
async def site(settings_env):
    env = {
        **settings_env,
        "AETHEX_UPLOADS__MAX_BYTES": str(MAX_BYTES),
        "AETHEX_UPLOADS__MAX_PIXELS": "4000000",
        "AETHEX_UPLOADS__AVATAR_SIZE": "128",
        "AETHEX_UPLOADS__BANNER_WIDTH": "600",
        "AETHEX_UPLOADS__BANNER_HEIGHT": "150",
        "AETHEX_AUTH__MAX_API_TOKENS": "2",
    }
    async with running_server(env) as server:
        yield server, f"http://127.0.0.1:{server.http_port}"


def uploads_of(server) -> set[str]:
    directory: Path = server.settings.data_dir / "uploads"
    return {p.name for p in directory.iterdir()} if directory.exists() else set()


def image_bytes(size: tuple[int, int], fmt: str, mode: str = "RGB", **save: object) -> bytes:
    image = Image.new(mode, size, (200, 40, 90) if mode == "RGB" else (200, 40, 90, 128))
    # Some structure so the encoders have real work and a crop is visible.
    for x in range(0, size[0], max(1, size[0] // 8)):
        for y in range(size[1]):
            image.putpixel((x, y), (10, 200, 10) if mode == "RGB" else (10, 200, 10, 255))
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header declares huge dimensions (a decompression-bomb shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def form_with(
    data: bytes, filename: str = "x.png", content_type: str = "image/png", field: str = "file"
) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field(field, data, filename=filename, content_type=content_type)
    return form


async def upload(
    http: aiohttp.ClientSession, base: str, kind: str, data: bytes, **kw: object
) -> tuple[int, dict]:
    token = await csrf_of(http, base)
    async with http.post(
        f"{base}/api/upload/{kind}", data=form_with(data, **kw), headers={"X-CSRF-Token": token}
    ) as r:
        return r.status, await r.json()


async def fetch_image(http: aiohttp.ClientSession, base: str, url: str) -> Image.Image:
    async with http.get(f"{base}{url}") as r:
        assert r.status == 200
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Content-Type"] in ("image/jpeg", "image/png")
        image = Image.open(io.BytesIO(await r.read()))
        image.load()
        return image


# -- uploads -------------------------------------------------------------------------------


async def test_png_avatar_is_cropped_to_a_bounded_square(site) -> None:
    server, base = site
    async with await register(base, "alice") as http:
        status, body = await upload(http, base, "avatar", image_bytes((900, 500), "PNG"))
        assert status == 200, body
        assert (body["width"], body["height"]) == (128, 128)
        assert body["url"] == body["user"]["avatar_url"] and body["url"].startswith(
            "/uploads/avatar-"
        )
        image = await fetch_image(http, base, body["url"])
        assert image.size == (128, 128) and image.format == "JPEG"
        assert (await user_of(http, base))["avatar_url"] == body["url"]
        # Replacing it removes the old file.
        status, again = await upload(
            http, base, "avatar", image_bytes((64, 64), "PNG", mode="RGBA")
        )
        assert status == 200
        image = await fetch_image(http, base, again["url"])
        assert image.format == "PNG" and image.mode == "RGBA"  # transparency kept
        assert uploads_of(server) == {again["url"].rsplit("/", 1)[1]}
        async with http.get(f"{base}{body['url']}") as r:
            assert r.status == 404


async def test_jpeg_banner_fits_the_box_and_loses_its_metadata(site) -> None:
    _, base = site
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0131] = "leaky-software"
    data = image_bytes((1200, 800), "JPEG", exif=exif.tobytes())
    assert b"SecretCam" in data
    async with await register(base, "alice") as http:
        status, body = await upload(
            http, base, "banner", data, filename="../../etc/passwd", content_type="image/jpeg"
        )
        assert status == 200, body
        assert body["width"] <= 600 and body["height"] <= 150
        assert body["url"].startswith("/uploads/banner-") and "passwd" not in body["url"]
        async with http.get(f"{base}{body['url']}") as r:
            raw = await r.read()
            assert r.headers["Cache-Control"].startswith("public")
        assert b"SecretCam" not in raw and b"leaky-software" not in raw
        image = Image.open(io.BytesIO(raw))
        assert image.size == (body["width"], body["height"]) == (225, 150)


@pytest.mark.parametrize(
    "case",
    ["text", "truncated", "huge_dimensions", "too_many_pixels", "too_many_bytes", "empty", "svg"],
)
async def test_bad_uploads_are_refused_and_change_nothing(site, case) -> None:
    server, base = site
    good = image_bytes((50, 50), "PNG")
    if case == "text":
        data, expected = b"hello, I am not an image\n" * 10, (400, "not_an_image")
    elif case == "truncated":
        data, expected = image_bytes((400, 400), "PNG")[:-400], (400, "damaged_image")
    elif case == "huge_dimensions":
        data, expected = png_claiming(100_000, 100_000), (413, "image_too_large")
    elif case == "too_many_pixels":
        data, expected = image_bytes((2500, 2000), "PNG"), (413, "image_too_large")
    elif case == "too_many_bytes":
        data = image_bytes((450, 450), "BMP")  # 600 kB: within the body limit, over max_bytes
        expected = (413, "file_too_large")
    elif case == "empty":
        data, expected = b"", (400, "empty_file")
    else:
        data = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
        expected = (400, "not_an_image")
    async with await register(base, "alice") as http:
        status, body = await upload(http, base, "avatar", good)
        assert status == 200
        before_user = await user_of(http, base)
        before_files = uploads_of(server)
        for kind in ("avatar", "banner"):
            status, body = await upload(http, base, kind, data)
            assert (status, body["error"]["code"]) == expected, body
            assert body["error"]["message"]
        assert await user_of(http, base) == before_user
        assert uploads_of(server) == before_files


async def test_body_over_the_request_limit_gets_a_json_413(site) -> None:
    server, base = site
    async with await register(base, "alice") as http:
        status, body = await upload(http, base, "avatar", b"\x00" * (2 << 20))
        assert status == 413 and body["error"]["code"] == "request_entity_too_large"
        assert "Maximum request body size" in body["error"]["message"]
        assert uploads_of(server) == set()


async def test_upload_needs_login_csrf_multipart_and_a_file(site) -> None:
    _, base = site
    data = image_bytes((50, 50), "PNG")
    async with aiohttp.ClientSession() as anon:
        async with anon.post(f"{base}/api/upload/avatar", data=form_with(data)) as r:
            assert r.status == 401
    async with await register(base, "alice") as http:
        async with http.post(f"{base}/api/upload/avatar", data=form_with(data)) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "csrf_failed"
        h = {"X-CSRF-Token": await csrf_of(http, base)}
        async with http.post(f"{base}/api/upload/avatar", json={"file": "x"}, headers=h) as r:
            assert r.status == 415
        async with http.post(
            f"{base}/api/upload/avatar", headers=h, data=form_with(data, field="picture")
        ) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "missing_field"
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("file", "just text")
        async with http.post(f"{base}/api/upload/banner", data=form, headers=h) as r:
            # A plain text field where a file belongs.
            assert r.status == 400
        assert (await user_of(http, base))["avatar_url"] is None


async def test_upload_route_serves_only_generated_names(site) -> None:
    server, base = site
    (server.settings.data_dir / "uploads").mkdir(parents=True, exist_ok=True)
    (server.settings.data_dir / "uploads" / "notes.txt").write_text("private")
    async with aiohttp.ClientSession() as http:
        for path in (
            "/uploads/notes.txt",
            "/uploads/..%2Faethex.db",
            "/uploads/%2e%2e/aethex.db",
            "/uploads/avatar-" + "0" * 32 + ".jpg",
            "/uploads/avatar-../../x.jpg",
            "/uploads/avatar-" + "0" * 32 + ".svg",
        ):
            async with http.get(f"{base}{path}") as r:
                assert r.status == 404, path
                assert "private" not in await r.text()


async def test_uploads_past_the_decode_queue_get_503_and_change_nothing(settings_env) -> None:
    """One decode at a time and one waiting: with both taken (by work that waits for us), an
    upload is refused at once with 503 and Retry-After; once they are done, it goes through."""
    env = {
        **settings_env,
        "AETHEX_UPLOADS__MAX_CONCURRENT_DECODES": "1",
        "AETHEX_UPLOADS__MAX_WAITING_DECODES": "1",
    }
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        gate = server._runner.app[DECODE_GATE_KEY]
        release = threading.Event()
        held = [asyncio.create_task(gate.run(release.wait)) for _ in range(2)]
        try:
            async with await register(base, "alice") as http:
                while gate.queued < 2:  # each task takes its place before its first await
                    await asyncio.sleep(0)
                async with http.post(
                    f"{base}/api/upload/avatar",
                    data=form_with(image_bytes((50, 50), "PNG")),
                    headers={"X-CSRF-Token": await csrf_of(http, base)},
                ) as r:
                    assert r.status == 503 and int(r.headers["Retry-After"]) > 0
                    assert (await r.json())["error"]["code"] == "busy"
                assert uploads_of(server) == set()
                assert (await user_of(http, base))["avatar_url"] is None
                release.set()
                await asyncio.gather(*held)
                assert gate.queued == 0
                status, body = await upload(http, base, "avatar", image_bytes((50, 50), "PNG"))
                assert status == 200, body
        finally:
            release.set()
            await asyncio.gather(*held, return_exceptions=True)


# -- profile ---------------------------------------------------------------------------------


async def test_patch_profile(site) -> None:
    _, base = site
    async with await register(base, "alice") as http:
        h = {"X-CSRF-Token": await csrf_of(http, base)}
        async with http.patch(
            f"{base}/api/auth/profile",
            headers=h,
            json={
                "display_name": "Alice A.",
                "bio": "Speedruns\nand chat",
                "theme": "light",
                "language": "pt-BR",
                "social_links": {"website": "https://alice.example", "github": ""},
            },
        ) as r:
            assert r.status == 200, await r.text()
            user = (await r.json())["user"]
        assert (user["display_name"], user["bio"], user["theme"], user["language"]) == (
            "Alice A.",
            "Speedruns\nand chat",
            "light",
            "pt-BR",
        )
        assert user["social_links"] == {"website": "https://alice.example"}
        # The page follows the chosen theme and language.
        async with http.get(f"{base}/dashboard/profile") as r:
            page = await r.text()
        assert 'lang="pt-BR"' in page and 'data-theme="light"' in page


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"display_name": ""},
        {"display_name": 5},
        {"display_name": "x" * 65},
        {"bio": ["list"]},
        {"bio": "b" * 2001},
        {"theme": "neon"},
        {"language": "english!"},
        {"social_links": {"website": "javascript:alert(1)"}},
        {"social_links": {"myspace": "https://a.b"}},
        {"social_links": "https://a.b"},
        {"email": "new@example.org"},
        {"is_admin": True},
        {"display_name": "Fine", "theme": "neon"},
    ],
)
async def test_patch_profile_bad_input_changes_nothing(site, body) -> None:
    _, base = site
    async with await register(base, "alice") as http:
        before = await user_of(http, base)
        h = {"X-CSRF-Token": await csrf_of(http, base)}
        async with http.patch(f"{base}/api/auth/profile", headers=h, json=body) as r:
            assert r.status == 400, await r.text()
            error = (await r.json())["error"]
            assert error["code"] in ("invalid", "missing_field") and error["message"]
        assert await user_of(http, base) == before


async def test_patch_profile_needs_login_and_csrf(site) -> None:
    _, base = site
    async with aiohttp.ClientSession() as anon:
        async with anon.patch(f"{base}/api/auth/profile", json={"bio": "x"}) as r:
            assert r.status == 401
    async with await register(base, "alice") as http:
        async with http.patch(f"{base}/api/auth/profile", json={"bio": "x"}) as r:
            assert r.status == 403
        assert (await user_of(http, base))["bio"] == ""


# -- API tokens ------------------------------------------------------------------------------


async def test_tokens_are_shown_once_work_and_can_be_revoked(site) -> None:
    server, base = site
    async with await register(base, "alice") as http:
        h = {"X-CSRF-Token": await csrf_of(http, base)}
        async with http.post(
            f"{base}/api/auth/tokens", json={"name": "obs script"}, headers=h
        ) as r:
            assert r.status == 201
            created = await r.json()
        token, info = created["token"], created["api_token"]
        assert token.startswith("aethex_") and token.startswith(info["prefix"])
        async with http.get(f"{base}/api/auth/tokens") as r:
            listing = await r.text()
        assert token not in listing and info["prefix"] in listing
        async with aiohttp.ClientSession() as bot:
            bearer = {"Authorization": f"Bearer {token}"}
            async with bot.get(f"{base}/api/auth/user", headers=bearer) as r:
                assert r.status == 200 and (await r.json())["user"]["username"] == "alice"
            async with http.get(f"{base}/api/auth/tokens") as r:
                assert (await r.json())["tokens"][0]["last_used_at"] is not None
            async with http.delete(f"{base}/api/auth/tokens/{info['id']}", headers=h) as r:
                assert r.status == 200 and (await r.json())["api_token"]["revoked_at"]
            async with bot.get(f"{base}/api/auth/user", headers=bearer) as r:
                assert r.status == 401
    # The database never saw the plaintext.
    import sqlite3

    with sqlite3.connect(server.settings.data_dir / "aethex.db") as conn:
        rows = conn.execute("SELECT token_hash, prefix, name FROM api_tokens").fetchall()
    assert rows and all(token not in "".join(row) for row in rows)


async def test_token_errors(site) -> None:
    _, base = site
    async with await register(base, "alice") as alice, await register(base, "bob") as bob:
        ha = {"X-CSRF-Token": await csrf_of(alice, base)}
        hb = {"X-CSRF-Token": await csrf_of(bob, base)}
        async with alice.post(f"{base}/api/auth/tokens", json={"name": "a"}, headers=ha) as r:
            alice_token_id = (await r.json())["api_token"]["id"]
        # Bob cannot see or revoke Alice's token.
        async with bob.get(f"{base}/api/auth/tokens") as r:
            assert (await r.json())["tokens"] == []
        async with bob.delete(f"{base}/api/auth/tokens/{alice_token_id}", headers=hb) as r:
            assert r.status == 404
        for body, status in (
            ({}, 400),
            ({"name": ""}, 400),
            ({"name": 3}, 400),
            ({"name": "n" * 65}, 400),
        ):
            async with alice.post(f"{base}/api/auth/tokens", json=body, headers=ha) as r:
                assert r.status == status, body
        async with alice.post(f"{base}/api/auth/tokens", json={"name": "b"}, headers=ha) as r:
            assert r.status == 201
        async with alice.post(f"{base}/api/auth/tokens", json={"name": "c"}, headers=ha) as r:
            assert r.status == 409 and "limit" in (await r.json())["error"]["message"]
        for bad in ("abc", "999999", "-1"):
            async with alice.delete(f"{base}/api/auth/tokens/{bad}", headers=ha) as r:
                assert r.status == 404
        async with alice.delete(f"{base}/api/auth/tokens/{alice_token_id}") as r:
            assert r.status == 403  # no CSRF token
    async with aiohttp.ClientSession() as anon:
        async with anon.get(f"{base}/api/auth/tokens") as r:
            assert r.status == 401
        async with anon.post(f"{base}/api/auth/tokens", json={"name": "x"}) as r:
            assert r.status == 401
