"""The accounts JSON API against a real server: register, login, logout, sessions, CSRF,
bearer tokens, rate limiting of failed logins, onboarding and public profiles."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from storage import queries
from tests.accounts import DEFAULT_PASSWORD, csrf_of, login, register, user_of
from tests.conftest import running_server

pytestmark = pytest.mark.integration


def jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)


@pytest.fixture
def auth_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {
        **settings_env,
        "AETHEX_AUTH__LOGIN_FAILURE_DELAY_MIN": "0.2",
        "AETHEX_AUTH__LOGIN_FAILURE_DELAY_MAX": "0.3",
        "AETHEX_AUTH__LOGIN_MAX_FAILURES": "3",
        "AETHEX_AUTH__LOGIN_MAX_FAILURES_PER_ADDRESS": "5",
        "AETHEX_AUTH__MAX_API_TOKENS": "3",
    }


@pytest.fixture
async def site(auth_env):
    async with running_server(auth_env) as server:
        yield server, f"http://127.0.0.1:{server.http_port}"


def db_file(server) -> Path:
    return server.settings.data_dir / "aethex.db"


async def make_user(base: str, username: str) -> None:
    async with await register(base, username):
        pass


async def error_of(response: aiohttp.ClientResponse) -> dict:
    body = await response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return body["error"]


# -- register -----------------------------------------------------------------------------


async def test_register_logs_in_and_first_user_is_admin(site) -> None:
    server, base = site
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        async with http.post(
            f"{base}/api/auth/register",
            json={"username": "alice", "email": "Alice@Example.org", "password": DEFAULT_PASSWORD},
        ) as r:
            assert r.status == 201, await r.text()
            body = await r.json()
            cookie = r.cookies["aethex_session"]
        assert body["user"]["username"] == "alice" and body["user"]["is_admin"] is True
        assert body["user"]["email"] == "alice@example.org"
        assert body["user"]["onboarded"] is False
        assert body["csrf_token"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]
        assert cookie["path"] == "/"
        async with http.get(f"{base}/api/auth/user") as r:
            assert r.status == 200
            assert (await r.json())["user"]["username"] == "alice"
    async with await register(base, "bob") as bob:
        assert (await user_of(bob, base))["is_admin"] is False
    # Only the hash of the session token is stored.
    with sqlite3.connect(db_file(server)) as conn:
        hashes = [row[0] for row in conn.execute("SELECT token_hash FROM sessions")]
    assert len(hashes) == 2 and cookie.value not in hashes and all(len(h) == 64 for h in hashes)


async def test_secure_cookie_setting(auth_env) -> None:
    async with running_server({**auth_env, "AETHEX_HTTP__SECURE_COOKIES": "true"}) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{base}/api/auth/register",
                json={"username": "sec", "email": "sec@example.org", "password": DEFAULT_PASSWORD},
            ) as r:
                assert r.status == 201
                assert r.cookies["aethex_session"]["secure"]


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"email": "x@example.org", "password": DEFAULT_PASSWORD}, 400, "missing_field"),
        ({"username": "xavier", "password": DEFAULT_PASSWORD}, 400, "missing_field"),
        ({"username": "xavier", "email": "x@example.org"}, 400, "missing_field"),
        ({"username": 5, "email": "x@example.org", "password": DEFAULT_PASSWORD}, 400, "invalid"),
        (
            {"username": "Bad Name!", "email": "x@example.org", "password": DEFAULT_PASSWORD},
            400,
            "invalid",
        ),
        (
            {"username": "xavier", "email": "not-an-email", "password": DEFAULT_PASSWORD},
            400,
            "invalid",
        ),
        ({"username": "xavier", "email": "x@example.org", "password": "short"}, 400, "invalid"),
        ({"username": "xavier", "email": "x@example.org", "password": "p" * 5000}, 400, "invalid"),
        (
            {"username": "alice", "email": "x@example.org", "password": DEFAULT_PASSWORD},
            409,
            "conflict",
        ),
        (
            {"username": "xavier", "email": "ALICE@example.test", "password": DEFAULT_PASSWORD},
            409,
            "conflict",
        ),
    ],
)
async def test_register_rejects_bad_input_and_changes_nothing(site, body, status, code) -> None:
    server, base = site
    await make_user(base, "alice")
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        async with http.post(f"{base}/api/auth/register", json=body) as r:
            assert r.status == status
            assert (await error_of(r))["code"] == code
            assert "aethex_session" not in r.cookies
    with sqlite3.connect(db_file(server)) as conn:
        assert conn.execute("SELECT username FROM users").fetchall() == [("alice",)]


async def test_taken_email_gets_the_answer_a_taken_username_gets(site) -> None:
    """A sign-up must not say that an email address is registered: its refusal is word for
    word the refusal of a taken username (which is public anyway)."""
    _, base = site
    await make_user(base, "alice")
    answers = []
    async with aiohttp.ClientSession() as http:
        for body in (
            {"username": "xavier", "email": "alice@example.test"},
            {"username": "alice", "email": "someone.new@example.org"},
        ):
            async with http.post(
                f"{base}/api/auth/register", json={**body, "password": DEFAULT_PASSWORD}
            ) as r:
                answers.append((r.status, await r.read()))
    assert answers[0] == answers[1], answers
    assert answers[0][0] == 409
    assert b"alice@example.test" not in answers[0][1]


async def test_registration_is_limited_per_address(auth_env) -> None:
    """Attempts that reach the database (created or taken) count; malformed ones do not; a
    second address has its own count."""
    env = {**auth_env, "AETHEX_AUTH__REGISTER_MAX_PER_ADDRESS": "3"}
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        async with aiohttp.ClientSession() as http:
            for body, status in (
                (("usr1", "u1@example.org"), 201),
                (("usr1", "u2@example.org"), 409),
                (("Bad!", "x@example.org"), 400),
                (("usr3", "nope"), 400),
                (("usr3", "u3@example.org"), 201),
                (("usr4", "u4@example.org"), 429),
                (("usr1", "u1@example.org"), 429),
            ):
                async with http.post(
                    f"{base}/api/auth/register",
                    json={"username": body[0], "email": body[1], "password": DEFAULT_PASSWORD},
                ) as r:
                    assert r.status == status, (body, await r.text())
                    if status == 429:
                        assert (await error_of(r))["code"] == "too_many_attempts"
                        assert int(r.headers["Retry-After"]) > 0
        async with from_address("127.0.0.2") as other:
            async with other.post(
                f"{base}/api/auth/register",
                json={"username": "usr4", "email": "u4@example.org", "password": DEFAULT_PASSWORD},
            ) as r:
                assert r.status == 201, await r.text()
        with sqlite3.connect(db_file(server)) as conn:
            assert sorted(conn.execute("SELECT username FROM users").fetchall()) == [
                ("usr1",),
                ("usr3",),
                ("usr4",),
            ]


async def test_register_needs_a_json_object(site) -> None:
    _, base = site
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/api/auth/register", data=b"{nope", headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400 and (await error_of(r))["code"] == "invalid_json"
        async with http.post(f"{base}/api/auth/register", json=["alice"]) as r:
            assert r.status == 400 and (await error_of(r))["code"] == "invalid_json"
        async with http.post(f"{base}/api/auth/register", data="username=a") as r:
            assert r.status == 415


# -- login / logout ------------------------------------------------------------------------


async def test_login_by_username_or_email_and_logout_ends_the_session(site) -> None:
    server, base = site
    await make_user(base, "alice")
    async with await login(base, "alice") as a:
        assert (await user_of(a, base))["username"] == "alice"
        cookie = a.cookie_jar.filter_cookies(URL(base))["aethex_session"].value
        token = await csrf_of(a, base)
        async with a.post(f"{base}/api/auth/logout", headers={"X-CSRF-Token": token}) as r:
            assert r.status == 204
        async with a.get(f"{base}/api/auth/user") as r:
            assert r.status == 401 and (await error_of(r))["code"] == "unauthenticated"
    # The old cookie value is dead on the server side too, not just deleted in the browser.
    async with aiohttp.ClientSession(cookies={"aethex_session": cookie}) as replay:
        async with replay.get(f"{base}/api/auth/user") as r:
            assert r.status == 401
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        async with http.post(
            f"{base}/api/auth/login",
            json={"username": "ALICE@example.test", "password": DEFAULT_PASSWORD},
        ) as r:
            assert r.status == 200 and (await r.json())["user"]["username"] == "alice"


async def test_login_bad_input(site) -> None:
    _, base = site
    async with aiohttp.ClientSession() as http:
        for body in (
            {"password": "x" * 10},
            {"username": "alice"},
            {"username": 3, "password": "x"},
            {"username": "alice", "password": ["x"]},
        ):
            async with http.post(f"{base}/api/auth/login", json=body) as r:
                assert r.status == 400, body
                assert (await error_of(r))["code"] == "missing_field"


def from_address(host: str, **kw: object) -> aiohttp.ClientSession:
    """A client whose sockets come from ``host`` (any 127.x.y.z is this machine): a second
    client address without trusting any header."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(host, 0)), **kw)


async def test_wrong_password_is_slowed_then_blocked_per_account_and_address(site) -> None:
    """Guessing from one address blocks that address for the account, not the account: the
    owner, from their own address, still logs in (a lockout anyone could trigger is gone)."""
    _, base = site
    await make_user(base, "alice")
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            started = time.monotonic()
            async with http.post(
                f"{base}/api/auth/login", json={"username": "alice", "password": "wrong password"}
            ) as r:
                assert r.status == 401
                assert (await error_of(r))["code"] == "invalid_credentials"
            # The randomised delay (0.2-0.3 s in this server) comes on top of argon2.
            assert time.monotonic() - started >= 0.2
        # Now even the right password is refused until the window passes: brute force stops.
        for password in ("wrong again", DEFAULT_PASSWORD):
            async with http.post(
                f"{base}/api/auth/login", json={"username": "alice", "password": password}
            ) as r:
                assert r.status == 429
                err = await error_of(r)
                assert err["code"] == "too_many_attempts" and "this account" in err["message"]
                assert int(r.headers["Retry-After"]) > 0
        # Using the email address does not get around the account limit.
        async with http.post(
            f"{base}/api/auth/login",
            json={"username": "alice@example.test", "password": DEFAULT_PASSWORD},
        ) as r:
            assert r.status == 429
        # The owner on another address is not locked out, and their login does not lift the
        # block on the guessing address.
        async with from_address("127.0.0.2", cookie_jar=jar()) as owner:
            async with owner.post(
                f"{base}/api/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD}
            ) as r:
                assert r.status == 200, await r.text()
                assert r.cookies["aethex_session"].value
        async with http.post(
            f"{base}/api/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD}
        ) as r:
            assert r.status == 429


async def test_failures_are_limited_per_address_across_accounts(site) -> None:
    _, base = site
    async with aiohttp.ClientSession() as http:
        # Five different (partly unknown) accounts from one address: the address limit is 5.
        for name in ("nobody1", "nobody2", "nobody3", "nobody4", "nobody5"):
            async with http.post(
                f"{base}/api/auth/login", json={"username": name, "password": "guess guess"}
            ) as r:
                assert r.status == 401
        await make_user(base, "carol")
        async with http.post(
            f"{base}/api/auth/login", json={"username": "carol", "password": DEFAULT_PASSWORD}
        ) as r:
            assert r.status == 429
            assert "your address" in (await error_of(r))["message"]


@pytest.mark.parametrize("trusted", [False, True])
async def test_address_behind_a_proxy(auth_env, trusted) -> None:
    """With http.trust_forwarded_for the limit follows the proxy's X-Forwarded-For entry;
    without it the header is ignored, so clients cannot dodge the limit by sending one."""
    env = {**auth_env, "AETHEX_HTTP__TRUST_FORWARDED_FOR": str(trusted).lower()}
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        async with aiohttp.ClientSession() as http:
            for i in range(5):
                async with http.post(
                    f"{base}/api/auth/login",
                    json={"username": f"nobody{i}", "password": "guess guess"},
                    headers={"X-Forwarded-For": f"198.51.100.{i}"},
                ) as r:
                    assert r.status == 401
            # A client behind the proxy that has not failed yet.
            async with http.post(
                f"{base}/api/auth/login",
                json={"username": "nobody9", "password": "guess guess"},
                headers={"X-Forwarded-For": "203.0.113.1, 198.51.100.77"},
            ) as r:
                assert r.status == (401 if trusted else 429)


async def test_successful_login_resets_the_account_count(site) -> None:
    _, base = site
    await make_user(base, "alice")
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        for _round in range(2):
            for _ in range(2):
                async with http.post(
                    f"{base}/api/auth/login", json={"username": "alice", "password": "nope nope"}
                ) as r:
                    assert r.status == 401
            async with http.post(
                f"{base}/api/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD}
            ) as r:
                assert r.status == 200
            # Forget the session: calls with its cookie would need its CSRF token.
            http.cookie_jar.clear()


async def test_argon2_runs_off_the_event_loop(site) -> None:
    """While logins are being verified, other requests are still answered promptly."""
    _, base = site
    await make_user(base, "alice")
    async with aiohttp.ClientSession() as http:

        async def one_login() -> None:
            async with http.post(
                f"{base}/api/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD}
            ) as r:
                assert r.status == 200

        logins = [asyncio.create_task(one_login()) for _ in range(4)]
        await asyncio.sleep(0.01)
        started = time.monotonic()
        async with http.get(f"{base}/metrics") as r:
            assert r.status == 200
        assert time.monotonic() - started < 0.5
        await asyncio.gather(*logins)


# -- CSRF ----------------------------------------------------------------------------------


async def test_cookie_requests_that_change_state_need_the_csrf_token(site) -> None:
    _, base = site
    async with await register(base, "alice") as a:
        for headers in ({}, {"X-CSRF-Token": "0" * 64}, {"X-CSRF-Token": ""}):
            async with a.post(f"{base}/api/auth/onboard", json={"bio": "hi"}, headers=headers) as r:
                assert r.status == 403
                assert (await error_of(r))["code"] == "csrf_failed"
            async with a.post(f"{base}/api/auth/logout", headers=headers) as r:
                assert r.status == 403
        # A form post without the field is refused as well, and a page gets the HTML answer.
        async with a.post(f"{base}/auth/logout", data={"x": "1"}) as r:
            assert r.status == 403 and "text/html" in r.headers["Content-Type"]
        assert (await user_of(a, base))["bio"] == ""
        token = await csrf_of(a, base)
        async with a.post(
            f"{base}/api/auth/onboard", json={"bio": "hi"}, headers={"X-CSRF-Token": token}
        ) as r:
            assert r.status == 200
        # Another session's token does not fit this one.
    async with await register(base, "bob") as b:
        async with await login(base, "alice") as a2:
            bob_token = await csrf_of(b, base)
            async with a2.post(
                f"{base}/api/auth/onboard", json={"bio": "x"}, headers={"X-CSRF-Token": bob_token}
            ) as r:
                assert r.status == 403


async def test_bearer_requests_are_exempt_and_ignore_the_cookie(site) -> None:
    server, base = site
    async with await register(base, "alice") as a:
        async with server.db.session() as db:
            api_token = await queries.create_api_token(db, "alice", "script")
            await db.commit()
        # The cookie is ignored when a bearer token is sent: no CSRF token needed, and the
        # request acts as the token's user.
        async with a.post(
            f"{base}/api/auth/onboard",
            json={"bio": "by token"},
            headers={"Authorization": f"Bearer {api_token}"},
        ) as r:
            assert r.status == 200
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/api/auth/onboard",
            json={"display_name": "Al"},
            headers={"Authorization": f"Bearer {api_token}"},
        ) as r:
            assert r.status == 200
            assert (await r.json())["user"]["display_name"] == "Al"
        async with http.get(
            f"{base}/api/auth/user", headers={"Authorization": f"Bearer {api_token}"}
        ) as r:
            assert r.status == 200 and (await r.json())["csrf_token"] is None
        for bad in ("Bearer nope", "Bearer ", "Bearer aethex_" + "x" * 40):
            async with http.get(f"{base}/api/auth/user", headers={"Authorization": bad}) as r:
                assert r.status == 401


# -- onboarding and public profiles ----------------------------------------------------------


async def test_onboard_sets_username_display_name_bio(site) -> None:
    _, base = site
    async with await register(base, "alice") as a:
        token = await csrf_of(a, base)
        h = {"X-CSRF-Token": token}
        async with a.post(
            f"{base}/api/auth/onboard",
            json={"username": "alice_new", "display_name": "Alice N.", "bio": "I stream."},
            headers=h,
        ) as r:
            assert r.status == 200, await r.text()
            user = (await r.json())["user"]
        assert (user["username"], user["display_name"], user["bio"], user["onboarded"]) == (
            "alice_new",
            "Alice N.",
            "I stream.",
            True,
        )
    async with await register(base, "bob") as b:
        h = {"X-CSRF-Token": await csrf_of(b, base)}
        cases = [
            ({"username": "alice_new"}, 409),
            ({"username": "No!"}, 400),
            ({"display_name": ""}, 400),
            ({"display_name": "x" * 65}, 400),
            ({"display_name": 7}, 400),
            ({"bio": "b" * 2001}, 400),
            ({"is_admin": True}, 400),
            ({"username": "bobby", "bio": 5}, 400),
        ]
        for body, status in cases:
            async with b.post(f"{base}/api/auth/onboard", json=body, headers=h) as r:
                assert r.status == status, (body, await r.text())
                await error_of(r)
        me = await user_of(b, base)
        assert (me["username"], me["display_name"], me["onboarded"], me["is_admin"]) == (
            "bob",
            "bob",
            False,
            False,
        )
    async with aiohttp.ClientSession() as anon:
        async with anon.post(f"{base}/api/auth/onboard", json={"bio": "x"}) as r:
            assert r.status == 401


async def test_public_profile_never_shows_email_to_others(site) -> None:
    _, base = site
    async with (
        await register(base, "alice") as admin,
        await register(base, "bob") as bob,
        await register(base, "carol") as carol,
    ):
        bob_id = (await user_of(bob, base))["id"]
        async with carol.get(f"{base}/api/users/{bob_id}") as r:
            assert r.status == 200
            shown = (await r.json())["user"]
        assert shown["username"] == "bob" and "email" not in shown
        async with aiohttp.ClientSession() as anon:
            async with anon.get(f"{base}/api/users/{bob_id}") as r:
                text = await r.text()
                assert r.status == 200 and "bob@example.test" not in text
            for bad in ("999", "abc", "-1", "1" * 30):
                async with anon.get(f"{base}/api/users/{bad}") as r:
                    assert r.status == 404 and (await error_of(r))["code"] == "not_found"
        async with bob.get(f"{base}/api/users/{bob_id}") as r:
            assert (await r.json())["user"]["email"] == "bob@example.test"
        async with admin.get(f"{base}/api/users/{bob_id}") as r:
            assert (await r.json())["user"]["email"] == "bob@example.test"


async def test_api_errors_have_one_shape(site) -> None:
    _, base = site
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/no/such/route") as r:
            assert r.status == 404 and (await error_of(r))["code"] == "not_found"
        async with http.get(f"{base}/api/auth/login") as r:
            assert r.status == 405 and (await error_of(r))["code"] == "method_not_allowed"
        async with http.get(f"{base}/api/auth/user") as r:
            assert r.status == 401 and r.headers["Cache-Control"] == "no-store"
