"""Account pages over real HTTP (forms, redirects, cookies, CSRF, nav) and what the identity
middleware must leave alone."""

from __future__ import annotations

import hashlib
import hmac
import io
import re
import stat

import aiohttp
import pytest
from PIL import Image

from tests.accounts import DEFAULT_PASSWORD, csrf_of, register, user_of
from tests.conftest import running_server

pytestmark = pytest.mark.integration


@pytest.fixture
async def site(settings_env):
    env = {
        **settings_env,
        "AETHEX_AUTH__LOGIN_FAILURE_DELAY_MIN": "0",
        "AETHEX_AUTH__LOGIN_FAILURE_DELAY_MAX": "0.05",
    }
    async with running_server(env) as server:
        yield server, f"http://127.0.0.1:{server.http_port}"


def browser_like() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def meta_csrf(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]*)">', html)
    assert match, "no csrf-token meta tag"
    return match.group(1)


async def form_token(http: aiohttp.ClientSession, url: str) -> str:
    """The CSRF field of the form at ``url``, as a browser gets it (with its pre-session cookie
    when nobody is logged in)."""
    async with http.get(url) as r:
        match = re.search(r'name="csrf_token" value="([^"]+)"', await r.text())
    assert match, f"no CSRF field in {url}"
    return match.group(1)


def png(size: tuple[int, int] = (300, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (30, 90, 200)).save(out, "PNG")
    return out.getvalue()


async def test_sign_up_onboard_and_see_yourself_in_the_nav(site) -> None:
    server, base = site
    async with browser_like() as http:
        async with http.get(f"{base}/") as r:
            page = await r.text()
        assert 'href="/auth/login"' in page and 'href="/auth/register"' in page
        assert meta_csrf(page) == ""  # no session, nothing to protect yet
        assert "aethex_csrf" not in r.cookies  # and no cookie for a mere visit
        token = await form_token(http, f"{base}/auth/register")
        async with http.post(
            f"{base}/auth/register",
            allow_redirects=False,
            data={
                "csrf_token": token,
                "username": "alice",
                "email": "alice@example.org",
                "password": DEFAULT_PASSWORD,
            },
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/auth/onboard"
            assert r.cookies["aethex_session"]["httponly"]
        async with http.get(f"{base}/auth/onboard") as r:
            page = await r.text()
        token = meta_csrf(page)
        assert token and f'name="csrf_token" value="{token}"' in page
        form = aiohttp.FormData()
        for key, value in (
            ("csrf_token", token),
            ("username", "alice_tv"),
            ("display_name", "Alice <TV>"),
            ("bio", "Games & talk"),
        ):
            form.add_field(key, value)
        form.add_field("avatar", png(), filename="me.png", content_type="image/png")
        async with http.post(f"{base}/auth/onboard", data=form, allow_redirects=False) as r:
            assert r.status == 303, await r.text()
            after = r.headers["Location"]
            assert after.startswith("/dashboard/profile")
        me = await user_of(http, base)
        assert (me["username"], me["display_name"], me["bio"], me["onboarded"]) == (
            "alice_tv",
            "Alice <TV>",
            "Games & talk",
            True,
        )
        assert me["avatar_url"].startswith("/uploads/avatar-")
        async with http.get(f"{base}{after}") as r:
            page = await r.text()
        assert r.status == 200 and "Welcome!" in page
        # The nav shows the user (escaped), the admin link (first user) and a logout form.
        assert "Alice &lt;TV&gt;" in page and "Alice <TV>" not in page
        assert 'href="/dashboard/admin/users"' in page and 'action="/auth/logout"' in page
        assert 'href="/auth/login"' not in page


async def test_onboarding_with_a_bad_avatar_changes_nothing(site) -> None:
    _, base = site
    async with await register(base, "alice") as http:
        form = aiohttp.FormData()
        for key, value in (
            ("csrf_token", await csrf_of(http, base)),
            ("username", "renamed"),
            ("display_name", "New"),
            ("bio", "new bio"),
        ):
            form.add_field(key, value)
        form.add_field(
            "avatar", b"GIF89a but not really", filename="x.gif", content_type="image/gif"
        )
        async with http.post(f"{base}/auth/onboard", data=form) as r:
            page = await r.text()
            assert r.status == 400 and "not an image" in page
            assert 'value="renamed"' in page  # the form keeps what was typed
        me = await user_of(http, base)
        assert (me["username"], me["display_name"], me["onboarded"], me["avatar_url"]) == (
            "alice",
            "alice",
            False,
            None,
        )


async def test_register_form_errors_are_shown_and_nothing_is_created(site) -> None:
    server, base = site
    async with await register(base, "alice"):
        pass
    async with browser_like() as http:
        for data, status, text in (
            (
                {"username": "alice", "email": "a2@example.org", "password": DEFAULT_PASSWORD},
                409,
                "already taken",
            ),
            (
                {"username": "Bad!", "email": "b@example.org", "password": DEFAULT_PASSWORD},
                400,
                "invalid username",
            ),
            (
                {"username": "bob", "email": "nope", "password": DEFAULT_PASSWORD},
                400,
                "invalid email",
            ),
            (
                {"username": "bob", "email": "b@example.org", "password": "short"},
                400,
                "password must be",
            ),
            ({"username": "bob", "email": "b@example.org"}, 400, "password"),
        ):
            data["csrf_token"] = await form_token(http, f"{base}/auth/register")
            async with http.post(f"{base}/auth/register", data=data, allow_redirects=False) as r:
                page = await r.text()
                assert r.status == status, (data, page[-500:])
                assert text in page and 'role="alert"' in page
                assert "aethex_session" not in r.cookies
    import sqlite3

    with sqlite3.connect(server.settings.data_dir / "aethex.db") as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)


async def test_login_form_redirects_to_next_but_never_off_site(site) -> None:
    _, base = site
    async with await register(base, "alice"):
        pass
    for next_url, expected in (
        ("/dashboard/profile", "/dashboard/profile"),
        ("//evil.example/x", "/dashboard"),
        ("https://evil.example/", "/dashboard"),
        ("/\\evil.example", "/dashboard"),
    ):
        async with browser_like() as http:
            async with http.get(f"{base}/auth/login", params={"next": next_url}) as r:
                page = await r.text()
            assert f'name="next" value="{expected}"' in page
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            async with http.post(
                f"{base}/auth/login",
                allow_redirects=False,
                data={
                    "csrf_token": token,
                    "username": "alice",
                    "password": DEFAULT_PASSWORD,
                    "next": next_url,
                },
            ) as r:
                assert r.status == 303 and r.headers["Location"] == expected


async def test_login_form_failures_and_rate_limit(site) -> None:
    _, base = site
    async with await register(base, "alice"):
        pass
    async with browser_like() as http:
        token = await form_token(http, f"{base}/auth/login")
        for _ in range(5):
            async with http.post(
                f"{base}/auth/login",
                data={"csrf_token": token, "username": "alice", "password": "bad password"},
            ) as r:
                page = await r.text()
                assert r.status == 401 and "wrong username or password" in page
                assert 'value="alice"' in page
        async with http.post(
            f"{base}/auth/login",
            data={"csrf_token": token, "username": "alice", "password": DEFAULT_PASSWORD},
        ) as r:
            page = await r.text()
            assert r.status == 429 and "too many failed logins" in page
            assert int(r.headers["Retry-After"]) > 0


async def test_sign_in_forms_refuse_forged_posts(site) -> None:
    """Login CSRF: a cross-site page cannot read our form's token nor set our cookie, so a
    post without the pair (or with a token from another browser) logs nobody in."""
    _, base = site
    async with await register(base, "alice"):
        pass
    async with browser_like() as victim, browser_like() as attacker, browser_like() as fresh:
        stolen = await form_token(attacker, f"{base}/auth/login")
        await form_token(victim, f"{base}/auth/login")  # the victim has a cookie of its own
        for http, data in (
            (fresh, {}),
            (victim, {}),
            (victim, {"csrf_token": stolen}),
            (victim, {"csrf_token": "forged"}),
        ):
            async with http.post(
                f"{base}/auth/login",
                allow_redirects=False,
                data={"username": "alice", "password": DEFAULT_PASSWORD, **data},
            ) as r:
                assert r.status == 403, data
                assert "aethex_session" not in r.cookies
            async with http.post(
                f"{base}/auth/register",
                allow_redirects=False,
                data={
                    "username": "mallory",
                    "email": "m@example.org",
                    "password": DEFAULT_PASSWORD,
                    **data,
                },
            ) as r:
                assert r.status == 403, data
        # The JSON API is not a form target: it wants application/json (a preflight).
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{base}/api/auth/login",
                data="username=alice",
                headers={"Content-Type": "text/plain"},
            ) as r:
                assert r.status in (400, 415) and "aethex_session" not in r.cookies


async def test_sign_in_token_needs_the_servers_secret(settings_env, tmp_path) -> None:
    """Someone who can plant the pre-session cookie (a sibling subdomain, a man in the middle
    on plain HTTP) knows it, but must not be able to compute the form token for it: it is
    keyed with a secret the server keeps (0600) in its data dir, so it differs between two
    servers for the same cookie and survives a restart of one."""
    planted = "planted-by-the-attacker-0123456789abcdefgh"
    from_cookie_alone = hmac.new(
        planted.encode(), b"aethex-csrf-v1", hashlib.sha256
    ).hexdigest()  # the derivation this replaces

    async def token_for(env: dict[str, str]) -> str:
        async with running_server(env) as server:
            base = f"http://127.0.0.1:{server.http_port}"
            secret = server.settings.data_dir / "secret_key"
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600
            async with aiohttp.ClientSession(cookies={"aethex_csrf": planted}) as http:
                token = await form_token(http, f"{base}/auth/login")
                for guess, status in ((from_cookie_alone, 403), (token, 401)):
                    async with http.post(
                        f"{base}/auth/login",
                        allow_redirects=False,
                        data={
                            "csrf_token": guess,
                            "username": "nobody",
                            "password": "not the password",
                        },
                    ) as r:
                        assert r.status == status, guess  # 401: past the CSRF check
        return token

    first = await token_for(settings_env)
    assert first != from_cookie_alone
    assert await token_for(settings_env) == first  # the same data dir after a restart
    elsewhere = await token_for({**settings_env, "AETHEX_DATA_DIR": str(tmp_path / "other")})
    assert elsewhere != first


async def test_protected_pages_send_anonymous_users_to_login(site) -> None:
    _, base = site
    async with browser_like() as http:
        for path in ("/dashboard/profile", "/auth/onboard", "/dashboard/admin/users"):
            async with http.get(f"{base}{path}", allow_redirects=False) as r:
                assert r.status == 303
                assert r.headers["Location"].startswith("/auth/login?next=")


async def test_logout_form_needs_csrf_and_ends_the_session(site) -> None:
    _, base = site
    async with await register(base, "alice") as http:
        async with http.post(
            f"{base}/auth/logout", data={"csrf_token": "forged"}, allow_redirects=False
        ) as r:
            assert r.status == 403 and "CSRF" in await r.text()
        assert (await user_of(http, base))["username"] == "alice"
        async with http.post(
            f"{base}/auth/logout",
            allow_redirects=False,
            data={"csrf_token": await csrf_of(http, base)},
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/"
        async with http.get(f"{base}/api/auth/user") as r:
            assert r.status == 401


async def test_profile_page_forms(site) -> None:
    _, base = site
    async with await register(base, "alice") as http:
        token = await csrf_of(http, base)
        async with http.post(
            f"{base}/dashboard/profile",
            allow_redirects=False,
            data={
                "csrf_token": token,
                "display_name": "Alice",
                "bio": "bio",
                "theme": "light",
                "language": "de",
                "social_website": "https://alice.example",
            },
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/dashboard/profile?saved=1"
        me = await user_of(http, base)
        assert (me["theme"], me["language"], me["social_links"]) == (
            "light",
            "de",
            {"website": "https://alice.example"},
        )
        async with http.post(
            f"{base}/dashboard/profile",
            data={
                "csrf_token": token,
                "display_name": "Alice",
                "bio": "changed",
                "theme": "light",
                "language": "de",
                "social_twitter": "javascript:alert(1)",
            },
        ) as r:
            assert r.status == 400 and "social link" in await r.text()
        assert (await user_of(http, base))["bio"] == "bio"
        # Tokens: created on the page, shown once, listed by prefix, revoked.
        async with http.post(
            f"{base}/dashboard/profile/tokens", data={"csrf_token": token, "name": "bot"}
        ) as r:
            page = await r.text()
            assert r.headers["Cache-Control"] == "no-store"
        secret = re.search(r'id="new-token" readonly value="(aethex_[^"]+)"', page).group(1)
        async with http.get(f"{base}/dashboard/profile") as r:
            page = await r.text()
        assert secret not in page and secret[:12] in page
        token_id = re.search(r"/dashboard/profile/tokens/(\d+)/revoke", page).group(1)
        async with http.post(
            f"{base}/dashboard/profile/tokens/{token_id}/revoke",
            data={"csrf_token": token},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        async with aiohttp.ClientSession() as bot:
            async with bot.get(
                f"{base}/api/auth/user", headers={"Authorization": f"Bearer {secret}"}
            ) as r:
                assert r.status == 401
        # Banner upload through the page; a bad file shows the error on the page.
        form = aiohttp.FormData()
        form.add_field("csrf_token", token)
        form.add_field("file", b"not an image", filename="b.png", content_type="image/png")
        async with http.post(f"{base}/dashboard/profile/banner", data=form) as r:
            assert r.status == 400 and "not an image" in await r.text()
        form = aiohttp.FormData()
        form.add_field("csrf_token", token)
        form.add_field("file", png((1000, 300)), filename="b.png", content_type="image/png")
        async with http.post(
            f"{base}/dashboard/profile/banner", data=form, allow_redirects=False
        ) as r:
            assert r.status == 303
        assert (await user_of(http, base))["banner_url"].startswith("/uploads/banner-")


async def test_middlewares_leave_media_paths_alone(site) -> None:
    """/metrics, /hls/, /static/ never see the CSRF check (a cookie there is not ours to read)."""
    _, base = site
    async with await register(base, "alice") as http:
        async with http.post(f"{base}/metrics") as r:
            assert r.status == 405  # the router's answer, not a 403 from the CSRF check
        async with http.post(f"{base}/static/css/site.css") as r:
            assert r.status == 405
        async with http.get(f"{base}/hls/nobody/master.m3u8") as r:
            assert r.status == 404 and "csrf" not in (await r.text()).lower()
