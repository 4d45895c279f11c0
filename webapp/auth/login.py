"""Registration and login shared by the JSON API and the HTML forms.

Both front ends call these, so the rules (first user becomes admin, rate limits, the random
delay on failure, disabled accounts) cannot drift apart between them.

Failed logins are counted per (account, client address) and per address, never per account
alone: a per-account lockout let anyone lock the owner out with five wrong passwords from
anywhere. Now the guessing address is throttled (for that account after
``auth.login_max_failures``, for every account after ``auth.login_max_failures_per_address``)
while the owner, from their own address, still gets in. Guessing one account from many
addresses is bounded per address and by the cost of argon2, not by locking the account.

Registration is limited per address (``auth.register_max_per_address`` attempts that reach the
database per ``auth.register_window``), and a taken email gets the very answer a taken
username gets, so the message names neither. It cannot be made fully indistinguishable without
an email round trip: a new email logs the registrant in at once, a taken one cannot. Usernames
are public (``/u/{username}``), so a refused sign-up with a free username still tells that the
email is registered: the per-address limit is what keeps that a slow way to test addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time

from aiohttp import web

from mediaserver.addresses import address_key
from mediaserver.cluster.counts import CountsUnavailable
from storage import queries
from storage.accounts import get_user_with_profile
from storage.errors import ConflictError
from storage.models import User
from storage.passwords import hash_password, needs_rehash, verify_password

from ..errors import ApiError
from ..forwarded import client_host
from ..keys import COUNTS_KEY, DB_KEY, LIMITER_KEY, REGISTER_LIMITER_KEY, SETTINGS_KEY
from .limiter import Limit, LoginLimiter

# What a sign-up with a taken username or a taken email is told: the same, so that the answer
# does not say which of the two (emails are private; see the module docstring).
TAKEN = (
    "that username or email address is already taken: choose another username, or log "
    "in if you already have an account"
)

# Verified when the login names no account, so "no such user" costs what "wrong password"
# costs and response times do not tell which usernames exist.
_DUMMY_HASH = hash_password("aethex-dummy-password-for-timing")


def limiter(app: web.Application) -> LoginLimiter:
    if LIMITER_KEY not in app:
        auth = app[SETTINGS_KEY].auth
        app[LIMITER_KEY] = LoginLimiter(auth.login_window, auth.login_tracked_keys)
        app[REGISTER_LIMITER_KEY] = LoginLimiter(auth.register_window, auth.login_tracked_keys)
    return app[LIMITER_KEY]


async def _retry_after(
    app: web.Application, local: LoginLimiter, limits: list[Limit], window: float
) -> tuple[Limit, int] | None:
    """``LoginLimiter.retry_after`` of this node, or on a cluster node (issue 15) of every
    node: the failures are counted in Redis (mediaserver/cluster/counts.py), and this node's
    own count answers only while Redis cannot."""
    counts = app.get(COUNTS_KEY)
    if counts is not None:
        try:
            found = await counts.login_retry_after(
                [(lim.key, lim.max_failures) for lim in limits], window
            )
        except CountsUnavailable:
            pass
        else:
            if found is None:
                return None
            return limits[found[0]], max(1, math.ceil(found[1]))
    return local.retry_after(limits, time.monotonic())


async def _record_failure(
    app: web.Application, local: LoginLimiter, limits: list[Limit], window: float
) -> None:
    """A failure counts here always (the fallback), and in Redis on a cluster node."""
    local.record_failure(limits, time.monotonic())
    counts = app.get(COUNTS_KEY)
    if counts is not None:
        with contextlib.suppress(CountsUnavailable):
            await counts.login_failure([(lim.key, lim.max_failures) for lim in limits], window)


def client_address(request: web.Request) -> str:
    """The client's address; behind a trusted proxy, the one it appended to X-Forwarded-For
    (the last entry: anything before it came from the client and may be made up)."""
    trusted = request.app[SETTINGS_KEY].http.trust_forwarded_for
    return client_host(request.remote, request.headers, trusted) or "unknown"


def limit_address(request: web.Request) -> str:
    """The client's address as rate limits count it: IPv6 by /64, the block one subscriber
    usually gets to pick addresses from."""
    return address_key(client_address(request)) or "unknown"


def _required_text(name: str, value: object) -> str:
    """A form or JSON field that must be a non-empty string (400 otherwise)."""
    if not isinstance(value, str) or not value:
        raise ApiError(
            400,
            "missing_field" if not value else "invalid",
            f"the field {name!r} is required and must be a string",
        )
    return value


async def register_user(
    request: web.Request, username: object, email: object, password: object
) -> User:
    """Create an account (the very first one is an admin); storage errors say what is wrong.

    Every attempt that gets as far as the database (created, or refused as taken) counts
    against the address's ``auth.register_max_per_address``; malformed input does not.
    """
    name, mail, secret = (
        _required_text("username", username),
        _required_text("email", email),
        _required_text("password", password),
    )
    queries.validate_username(name)
    queries.validate_email(mail)
    queries.validate_password(secret)
    limiter(request.app)
    attempts = request.app[REGISTER_LIMITER_KEY]
    limits = [
        Limit(
            f"register:{limit_address(request)}",
            request.app[SETTINGS_KEY].auth.register_max_per_address,
        )
    ]
    window = request.app[SETTINGS_KEY].auth.register_window
    blocked = await _retry_after(request.app, attempts, limits, window)
    if blocked is not None:
        seconds = blocked[1]
        raise ApiError(
            429,
            "too_many_attempts",
            f"too many sign-ups from your address; try again in {seconds} seconds",
            headers={"Retry-After": str(seconds)},
        )
    await _record_failure(request.app, attempts, limits, window)
    async with request.app[DB_KEY].session() as session:
        first = await queries.count_users(session) == 0
        try:
            user = await queries.create_user(session, name, mail, secret, is_admin=first)
        except ConflictError:
            raise ApiError(409, "conflict", TAKEN) from None
        await session.commit()
        loaded = await get_user_with_profile(session, user.id)
    assert loaded is not None
    return loaded


async def authenticate(request: web.Request, login: object, password: object) -> User:
    """The user ``login`` (username or email) and ``password`` open, or an ApiError.

    Limits: ``auth.login_max_failures`` failures per account from one client address and
    ``auth.login_max_failures_per_address`` per client address within ``auth.login_window``;
    past either, that address's attempts get 429 without the password even being checked
    (for that account, or for any). Every failure is answered after a random delay, which also
    blurs timing differences.
    """
    if not isinstance(login, str) or not login.strip():
        raise ApiError(
            400, "missing_field", "the field 'username' is required and must be a string"
        )
    if not isinstance(password, str) or not password:
        raise ApiError(
            400, "missing_field", "the field 'password' is required and must be a string"
        )
    settings = request.app[SETTINGS_KEY].auth
    login = login.strip().lower()
    async with request.app[DB_KEY].session() as session:
        if "@" in login:
            user = await queries.get_user_by_email(session, login)
        else:
            user = await queries.get_user_by_username(session, login)
    address = limit_address(request)
    account = f"user:{user.id}" if user is not None else f"login:{login[:300]}"
    pair_key = f"{account}@{address}"
    limits = [
        Limit(pair_key, settings.login_max_failures),
        Limit(f"addr:{address}", settings.login_max_failures_per_address),
    ]
    lim = limiter(request.app)
    blocked = await _retry_after(request.app, lim, limits, settings.login_window)
    if blocked is not None:
        limit, seconds = blocked
        which = "this account from your address" if limit is limits[0] else "your address"
        raise ApiError(
            429,
            "too_many_attempts",
            f"too many failed logins for {which}; try again in {seconds} seconds",
            headers={"Retry-After": str(seconds)},
        )
    if len(password) > queries.PASSWORD_MAX:
        ok = False
    else:
        ok = await asyncio.to_thread(
            verify_password, user.password_hash if user is not None else _DUMMY_HASH, password
        )
        ok = ok and user is not None
    if not ok:
        await _record_failure(request.app, lim, limits, settings.login_window)
        await asyncio.sleep(
            random.uniform(settings.login_failure_delay_min, settings.login_failure_delay_max)
        )
        raise ApiError(401, "invalid_credentials", "wrong username or password")
    assert user is not None
    # Only now, so guessing cannot discover which accounts are disabled.
    if user.is_disabled:
        raise ApiError(
            403, "account_disabled", "this account has been disabled by an administrator"
        )
    lim.clear(pair_key)
    counts = request.app.get(COUNTS_KEY)
    if counts is not None:
        with contextlib.suppress(CountsUnavailable):
            await counts.login_clear(pair_key)
    async with request.app[DB_KEY].session() as session:
        row = await get_user_with_profile(session, user.id)
        assert row is not None
        if needs_rehash(row.password_hash):
            row.password_hash = await asyncio.to_thread(hash_password, password)
            await session.commit()
    return row
