"""User administration over the JSON API and the admin page: roles and disabled accounts."""

from __future__ import annotations

import aiohttp
import pytest

from tests.accounts import DEFAULT_PASSWORD, csrf_of, register, user_of
from tests.conftest import running_server

pytestmark = pytest.mark.integration


@pytest.fixture
async def site(settings_env):
    async with running_server(settings_env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        admin = await register(base, "root")  # the first account: an admin
        bob = await register(base, "bob")
        try:
            yield server, base, admin, bob
        finally:
            await admin.close()
            await bob.close()


async def patch_user(
    http: aiohttp.ClientSession, base: str, user_id: int, body: object
) -> tuple[int, dict]:
    h = {"X-CSRF-Token": await csrf_of(http, base)}
    async with http.patch(f"{base}/api/admin/users/{user_id}", json=body, headers=h) as r:
        return r.status, await r.json()


async def test_admin_lists_users_others_cannot(site) -> None:
    _, base, admin, bob = site
    async with admin.get(f"{base}/api/admin/users") as r:
        assert r.status == 200
        users = (await r.json())["users"]
    assert [(u["username"], u["is_admin"], u["email"]) for u in users] == [
        ("root", True, "root@example.test"),
        ("bob", False, "bob@example.test"),
    ]
    async with admin.get(f"{base}/api/admin/users", params={"limit": "1", "offset": "1"}) as r:
        assert [u["username"] for u in (await r.json())["users"]] == ["bob"]
    for bad in ({"limit": "x"}, {"limit": "100000"}, {"offset": "-1"}):
        async with admin.get(f"{base}/api/admin/users", params=bad) as r:
            assert r.status == 400, bad
    async with bob.get(f"{base}/api/admin/users") as r:
        assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
    async with aiohttp.ClientSession() as anon:
        async with anon.get(f"{base}/api/admin/users") as r:
            assert r.status == 401
        async with anon.patch(f"{base}/api/admin/users/1", json={"is_admin": False}) as r:
            assert r.status == 401


async def test_promote_demote_and_the_last_admin_guard(site) -> None:
    _, base, admin, bob = site
    root_id = (await user_of(admin, base))["id"]
    bob_id = (await user_of(bob, base))["id"]
    # Bob cannot make himself admin.
    assert (await patch_user(bob, base, bob_id, {"is_admin": True}))[0] == 403
    # The only admin cannot remove their own role or disable themselves.
    for body in ({"is_admin": False}, {"is_disabled": True}):
        status, err = await patch_user(admin, base, root_id, body)
        assert status == 409 and err["error"]["code"] == "last_admin"
    assert (await user_of(admin, base))["is_admin"] is True
    status, body = await patch_user(admin, base, bob_id, {"is_admin": True})
    assert status == 200 and body["user"]["is_admin"] is True
    assert (await user_of(bob, base))["is_admin"] is True
    # With two admins, one may step down.
    status, body = await patch_user(bob, base, root_id, {"is_admin": False})
    assert status == 200 and body["user"]["is_admin"] is False


@pytest.mark.parametrize(
    "body, status",
    [
        ({}, 400),
        ({"is_admin": "yes"}, 400),
        ({"is_disabled": 1}, 400),
        ({"email": "x"}, 400),
        (["is_admin"], 400),
    ],
)
async def test_patch_user_bad_input(site, body, status) -> None:
    _, base, admin, bob = site
    bob_id = (await user_of(bob, base))["id"]
    got, err = await patch_user(admin, base, bob_id, body)
    assert got == status and err["error"]["message"]
    assert (await user_of(bob, base))["is_admin"] is False
    for missing in ("9999", "abc"):
        got, _ = await patch_user(admin, base, missing, {"is_admin": True})  # type: ignore[arg-type]
        assert got == 404


async def test_disabled_user_is_locked_out_everywhere_until_enabled(site) -> None:
    server, base, admin, bob = site
    bob_id = (await user_of(bob, base))["id"]
    h = {"X-CSRF-Token": await csrf_of(bob, base)}
    async with bob.post(f"{base}/api/auth/tokens", json={"name": "t"}, headers=h) as r:
        token = (await r.json())["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    status, body = await patch_user(admin, base, bob_id, {"is_disabled": True})
    assert status == 200 and body["user"]["is_disabled"] is True
    # The live session is gone, the token is refused, login is refused after the password.
    async with bob.get(f"{base}/api/auth/user") as r:
        assert r.status == 401
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/auth/user", headers=bearer) as r:
            assert r.status == 401
        async with http.post(
            f"{base}/api/auth/login", json={"username": "bob", "password": DEFAULT_PASSWORD}
        ) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "account_disabled"
        async with http.post(
            f"{base}/api/auth/login", json={"username": "bob", "password": "wrong password!"}
        ) as r:
            assert r.status == 401  # a wrong password does not reveal the account is disabled
        async with http.get(f"{base}/api/users/{bob_id}") as r:
            assert r.status == 404
    status, _ = await patch_user(admin, base, bob_id, {"is_disabled": False})
    assert status == 200
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/auth/user", headers=bearer) as r:
            assert r.status == 200
        async with http.post(
            f"{base}/api/auth/login", json={"username": "bob", "password": DEFAULT_PASSWORD}
        ) as r:
            assert r.status == 200


async def test_admin_page(site) -> None:
    _, base, admin, bob = site
    bob_id = (await user_of(bob, base))["id"]
    async with bob.get(f"{base}/dashboard/admin/users") as r:
        page = await r.text()
        assert r.status == 403 and "administrator" in page
        assert 'class="nav-user">bob<' in page  # the error page still knows who you are
    async with admin.get(f"{base}/dashboard/admin/users") as r:
        page = await r.text()
    assert r.status == 200 and 'data-username="bob"' in page and "bob@example.test" in page
    token = await csrf_of(admin, base)
    async with admin.post(
        f"{base}/dashboard/admin/users/{bob_id}",
        allow_redirects=False,
        data={"csrf_token": token, "action": "disable"},
    ) as r:
        assert r.status == 303
    async with bob.get(f"{base}/api/auth/user") as r:
        assert r.status == 401
    async with admin.post(
        f"{base}/dashboard/admin/users/{bob_id}", data={"csrf_token": token, "action": "explode"}
    ) as r:
        assert r.status == 400
    async with admin.post(f"{base}/dashboard/admin/users/{bob_id}", data={"action": "enable"}) as r:
        assert r.status == 403  # no CSRF token
    root_id = (await user_of(admin, base))["id"]
    async with admin.post(
        f"{base}/dashboard/admin/users/{root_id}", data={"csrf_token": token, "action": "demote"}
    ) as r:
        page = await r.text()
    assert "no enabled administrator" in page
