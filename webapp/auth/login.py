"""Registration and login shared by the JSON API and the HTML forms.

Both front ends call these, so the rules (first user becomes admin, rate limits, the random
delay on failure, disabled accounts) cannot drift apart between them.
"""

from __future__ import annotations

import asyncio
import random
import time

from aiohttp import web

from storage import queries
from storage.models import User
from storage.passwords import hash_password, needs_rehash, verify_password

from ..app import DB_KEY, SETTINGS_KEY
from ..errors import ApiError
from .limiter import Limit, LoginLimiter

LIMITER_KEY = web.AppKey("login_limiter", LoginLimiter)

# Verified when the login names no account, so "no such user" costs what "wrong password"
# costs and response times do not tell which usernames exist.
_DUMMY_HASH = hash_password("aethex-dummy-password-for-timing")


def limiter(app: web.Application) -> LoginLimiter:
    if LIMITER_KEY not in app:
        auth = app[SETTINGS_KEY].auth
        app[LIMITER_KEY] = LoginLimiter(auth.login_window, auth.login_tracked_keys)
    return app[LIMITER_KEY]


def client_address(request: web.Request) -> str:
    """The client's address; behind a trusted proxy, the one it appended to X-Forwarded-For
    (the last entry: anything before it came from the client and may be made up)."""
    if request.app[SETTINGS_KEY].http.trust_forwarded_for:
        forwarded = request.headers.getall("X-Forwarded-For", [])
        if forwarded:
            last = forwarded[-1].split(",")[-1].strip()
            if last:
                return last[:64]
    return request.remote or "unknown"


async def register_user(request: web.Request, username: object, email: object,
                        password: object) -> User:
    """Create an account (the very first one is an admin); storage errors say what is wrong."""
    for name, value in (("username", username), ("email", email), ("password", password)):
        if not isinstance(value, str) or not value:
            raise ApiError(400, "missing_field" if not value else "invalid",
                           f"the field {name!r} is required and must be a string")
    async with request.app[DB_KEY].session() as session:
        first = await queries.count_users(session) == 0
        user = await queries.create_user(session, username, email, password,  # type: ignore[arg-type]
                                         is_admin=first)
        await session.commit()
        from storage.accounts import get_user_with_profile

        loaded = await get_user_with_profile(session, user.id)
    assert loaded is not None
    return loaded


async def authenticate(request: web.Request, login: object, password: object) -> User:
    """The user ``login`` (username or email) and ``password`` open, or an ApiError.

    Limits: ``auth.login_max_failures`` failures per account and
    ``auth.login_max_failures_per_address`` per client address within ``auth.login_window``;
    past either, attempts get 429 without the password even being checked. Every failure is
    answered after a random delay, which also blurs timing differences.
    """
    if not isinstance(login, str) or not login.strip():
        raise ApiError(400, "missing_field", "the field 'username' is required and must be a string")
    if not isinstance(password, str) or not password:
        raise ApiError(400, "missing_field", "the field 'password' is required and must be a string")
    settings = request.app[SETTINGS_KEY].auth
    login = login.strip().lower()
    async with request.app[DB_KEY].session() as session:
        if "@" in login:
            user = await queries.get_user_by_email(session, login)
        else:
            user = await queries.get_user_by_username(session, login)
    account_key = f"user:{user.id}" if user is not None else f"login:{login[:300]}"
    limits = [Limit(account_key, settings.login_max_failures),
              Limit(f"addr:{client_address(request)}", settings.login_max_failures_per_address)]
    lim = limiter(request.app)
    blocked = lim.retry_after(limits, time.monotonic())
    if blocked is not None:
        limit, seconds = blocked
        which = "this account" if limit is limits[0] else "your address"
        raise ApiError(429, "too_many_attempts",
                       f"too many failed logins for {which}; try again in {seconds} seconds",
                       headers={"Retry-After": str(seconds)})
    if len(password) > queries.PASSWORD_MAX:
        ok = False
    else:
        ok = await asyncio.to_thread(
            verify_password, user.password_hash if user is not None else _DUMMY_HASH, password)
        ok = ok and user is not None
    if not ok:
        lim.record_failure(limits, time.monotonic())
        await asyncio.sleep(random.uniform(settings.login_failure_delay_min,
                                           settings.login_failure_delay_max))
        raise ApiError(401, "invalid_credentials", "wrong username or password")
    assert user is not None
    # Only now, so guessing cannot discover which accounts are disabled.
    if user.is_disabled:
        raise ApiError(403, "account_disabled",
                       "this account has been disabled by an administrator")
    lim.clear(account_key)
    async with request.app[DB_KEY].session() as session:
        from storage.accounts import get_user_with_profile

        row = await get_user_with_profile(session, user.id)
        assert row is not None
        if needs_rehash(row.password_hash):
            row.password_hash = await asyncio.to_thread(hash_password, password)
            await session.commit()
    return row
