"""Account queries: login sessions, token lookup with the owner, profiles, admin changes.

Same rules as ``storage.queries``: every function takes an ``AsyncSession``, flushes and never
commits. Session and API-token secrets are only ever stored as their SHA-256, so a leaked
database copy cannot be replayed as a cookie or a bearer token.
"""

from __future__ import annotations

import functools
import re
import secrets
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from storage.db import rowcount
from storage.errors import ConflictError, NotFoundError, ValidationError
from storage.models import ApiToken, LoginSession, Profile, User
from storage.queries import (
    _SECRET_MAX,
    _TOKEN_DISPLAY_CHARS,
    TOKEN_NAME_MAX,
    _aware,
    _validate_text,
    get_user_by_username,
    new_api_token,
    sha256_hex,
    validate_username,
)

SESSION_TOKEN_BYTES = 32

DISPLAY_NAME_MAX = 64
BIO_MAX = 2000
THEMES = ("dark", "light")
# BCP 47-ish language tags: "en", "pt-BR", "zh-Hant".
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}$")
SOCIAL_KEYS = ("website", "twitter", "youtube", "twitch", "instagram", "mastodon", "github")
SOCIAL_URL_MAX = 300
SOCIAL_URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$")
# Never part of a link worth keeping: quotes and angle brackets (markup), the backslash
# (browsers read it as a slash, urllib does not), the backtick.
SOCIAL_URL_REFUSED = frozenset('"<>\\`')


def new_session_token() -> str:
    return secrets.token_urlsafe(SESSION_TOKEN_BYTES)


# -- sessions --------------------------------------------------------------------------------


async def create_login_session(
    session: AsyncSession, user_id: int, now: datetime, max_age: float
) -> str:
    """Start a login session for the user; return the cookie token (stored only hashed).

    Sessions of any user that have expired are deleted on the way, which keeps the table
    bounded without a background job.
    """
    now = _aware(now)
    await session.execute(delete(LoginSession).where(LoginSession.expires_at <= now))
    token = new_session_token()
    session.add(
        LoginSession(
            user_id=user_id,
            token_hash=sha256_hex(token),
            created_at=now,
            expires_at=now + timedelta(seconds=max_age),
        )
    )
    user = await session.get(User, user_id)
    if user is not None:
        user.last_login_at = now
    await session.flush()
    return token


async def user_for_session(session: AsyncSession, token: str, now: datetime) -> User | None:
    """The enabled user a live session token belongs to (profile loaded), else None."""
    if not isinstance(token, str) or not token or len(token) > _SECRET_MAX:
        return None
    params = {"token_hash": sha256_hex(token), "now": _aware(now)}
    return (await session.execute(_user_for_session(), params)).scalar_one_or_none()


@functools.cache
def _user_for_session() -> Select[User]:
    """Built once (every logged-in page view runs it): building it cost more than running."""
    return (
        select(User)
        .join(LoginSession, LoginSession.user_id == User.id)
        .options(joinedload(User.profile))
        .where(
            LoginSession.token_hash == bindparam("token_hash"),
            LoginSession.expires_at > bindparam("now"),
            User.is_disabled.is_(False),
        )
    )


async def delete_login_session(session: AsyncSession, token: str) -> bool:
    if not isinstance(token, str) or not token or len(token) > _SECRET_MAX:
        return False
    result = await session.execute(
        delete(LoginSession).where(LoginSession.token_hash == sha256_hex(token))
    )
    return bool(rowcount(result))


async def delete_user_sessions(session: AsyncSession, user_id: int) -> int:
    result = await session.execute(delete(LoginSession).where(LoginSession.user_id == user_id))
    return rowcount(result) or 0


# -- API tokens ------------------------------------------------------------------------------


async def list_api_tokens(session: AsyncSession, user_id: int) -> list[ApiToken]:
    return list(
        (
            await session.execute(
                select(ApiToken)
                .where(ApiToken.user_id == user_id)
                .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
            )
        ).scalars()
    )


async def create_user_api_token(
    session: AsyncSession, user_id: int, name: str, now: datetime, max_tokens: int
) -> tuple[ApiToken, str]:
    """A new token for the user; returns the row and the plaintext (shown once, never stored)."""
    name = _validate_text(name, "token name", TOKEN_NAME_MAX)
    active = (
        await session.execute(
            select(func.count())
            .select_from(ApiToken)
            .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        )
    ).scalar_one()
    if active >= max_tokens:
        raise ConflictError(
            f"you already have {active} API tokens (the limit is {max_tokens}); revoke one first"
        )
    token = new_api_token()
    row = ApiToken(
        user_id=user_id,
        name=name,
        token_hash=sha256_hex(token),
        prefix=token[:_TOKEN_DISPLAY_CHARS],
        created_at=_aware(now),
    )
    session.add(row)
    await session.flush()
    return row, token


async def revoke_user_api_token(
    session: AsyncSession, user_id: int, token_id: int, now: datetime
) -> ApiToken:
    """Revoke one of the user's own tokens by id. Another user's token counts as not found."""
    row = await session.get(ApiToken, token_id)
    if row is None or row.user_id != user_id:
        raise NotFoundError(f"no API token with id {token_id}")
    if row.revoked_at is None:
        row.revoked_at = _aware(now)
        await session.flush()
    return row


# -- users and profiles ------------------------------------------------------------------------


def display_name(user: User, profile: Profile | None) -> str:
    """The name others see: the profile's display name, else the username."""
    if profile is not None and profile.display_name.strip():
        return profile.display_name
    return user.username


async def get_user_with_profile(session: AsyncSession, user_id: int) -> User | None:
    return (
        (
            await session.execute(
                select(User).options(joinedload(User.profile)).where(User.id == user_id)
            )
        )
        .unique()
        .scalar_one_or_none()
    )


async def ensure_profile(session: AsyncSession, user: User) -> Profile:
    profile = await session.get(Profile, user.id)
    if profile is None:
        profile = Profile(user_id=user.id, display_name=user.username, bio="", social_links={})
        session.add(profile)
        await session.flush()
    return profile


def validate_display_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError("display name must be a string")
    return _validate_text(value, "display name", DISPLAY_NAME_MAX)


def validate_bio(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError("bio must be a string")
    bio = value.strip()
    if len(bio) > BIO_MAX:
        raise ValidationError(f"bio is too long ({len(bio)} characters, at most {BIO_MAX})")
    if any(ord(c) < 32 and c not in "\n\r\t" for c in bio):
        raise ValidationError("bio must not contain control characters")
    return bio


def validate_theme(value: Any) -> str:
    if value not in THEMES:
        raise ValidationError(f"theme must be one of {', '.join(THEMES)}")
    return value


def validate_language(value: Any) -> str:
    if not isinstance(value, str) or not LANGUAGE_RE.fullmatch(value):
        raise ValidationError("language must be a language tag such as en or pt-BR")
    return value


def _has_host(url: str) -> bool:
    try:
        return bool(urlsplit(url).hostname)
    except ValueError:  # a malformed IPv6 literal or port
        return False


def validate_social_links(value: Any) -> dict[str, str]:
    """Known networks only, each an http(s) URL; empty values drop the link."""
    if not isinstance(value, dict):
        raise ValidationError("social_links must be an object of network -> URL")
    links: dict[str, str] = {}
    for key, url in value.items():
        if key not in SOCIAL_KEYS:
            raise ValidationError(
                f"unknown social link {key!r}: use one of {', '.join(SOCIAL_KEYS)}"
            )
        if url is None or url == "":
            continue
        if not isinstance(url, str):
            raise ValidationError(f"social link {key!r} must be a URL string")
        url = url.strip()
        if (
            len(url) > SOCIAL_URL_MAX
            or not SOCIAL_URL_RE.fullmatch(url)
            or any(c in SOCIAL_URL_REFUSED or ord(c) < 32 or ord(c) == 127 for c in url)
            or not _has_host(url)
        ):
            raise ValidationError(
                f"social link {key!r} must be an http(s) URL of at most {SOCIAL_URL_MAX} characters"
            )
        links[key] = url
    return links


PROFILE_VALIDATORS = {
    "display_name": validate_display_name,
    "bio": validate_bio,
    "theme": validate_theme,
    "language": validate_language,
    "social_links": validate_social_links,
}


def clean_profile_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Validate every field first, so a bad one changes nothing."""
    unknown = sorted(set(changes) - set(PROFILE_VALIDATORS))
    if unknown:
        raise ValidationError(f"unknown profile field(s): {', '.join(unknown)}")
    return {key: PROFILE_VALIDATORS[key](value) for key, value in changes.items()}


async def update_profile(session: AsyncSession, user: User, changes: dict[str, Any]) -> Profile:
    cleaned = clean_profile_changes(changes)
    profile = await ensure_profile(session, user)
    for key, value in cleaned.items():
        setattr(profile, key, value)
    await session.flush()
    return profile


async def rename_user(session: AsyncSession, user: User, username: str) -> None:
    username = validate_username(username)
    if username == user.username:
        return
    other = await get_user_by_username(session, username)
    if other is not None:
        raise ConflictError(f"username {username!r} is already taken")
    user.username = username
    await session.flush()


async def list_users(session: AsyncSession, *, limit: int, offset: int = 0) -> list[User]:
    return list(
        (
            await session.execute(
                select(User)
                .options(joinedload(User.profile))
                .order_by(User.id)
                .limit(limit)
                .offset(offset)
            )
        ).scalars()
    )


async def set_user_flags(
    session: AsyncSession,
    user_id: int,
    *,
    is_admin: bool | None = None,
    is_disabled: bool | None = None,
) -> User:
    """Promote/demote or disable/enable a user. Disabling ends their sessions at once (tokens
    are refused while the account is disabled and work again if it is enabled)."""
    user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"no user with id {user_id}")
    if is_admin is not None:
        user.is_admin = bool(is_admin)
    if is_disabled is not None:
        user.is_disabled = bool(is_disabled)
        if user.is_disabled:
            await delete_user_sessions(session, user_id)
    await session.flush()
    return user


async def count_admins(session: AsyncSession) -> int:
    return (
        await session.execute(
            select(func.count())
            .select_from(User)
            .where(User.is_admin.is_(True), User.is_disabled.is_(False))
        )
    ).scalar_one()


async def mark_onboarded(session: AsyncSession, user: User, now: datetime) -> None:
    await session.execute(
        update(User)
        .where(User.id == user.id)
        .values(onboarded_at=_aware(now))
        .execution_options(synchronize_session=False)
    )
    user.onboarded_at = _aware(now)
