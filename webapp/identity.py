"""Who is making a request: session cookie or bearer token, resolved lazily; CSRF checks.

A browser logs in and gets a random session token in an HttpOnly, SameSite=Lax cookie (Secure
when ``http.secure_cookies``); the database keeps only its SHA-256. Scripts and the CLI send
``Authorization: Bearer TOKEN`` instead. ``current_user`` resolves whichever was sent the first
time a handler asks and caches the answer on the request, so routes that never ask (and the
media paths in ``HOT_PREFIXES``, which our middleware does not even look at) never touch the
database for it. Disabled accounts resolve to anonymous.

CSRF: a cross-site page can make the browser send our cookie but cannot read our pages, so every
state-changing request that arrives with the session cookie must also carry a token only our
pages know: ``csrf_token`` in a form, or the ``X-CSRF-Token`` header from JavaScript (pages
expose it in ``<meta name="csrf-token">``). The token is an HMAC of the session token keyed with
the server's secret, so the check needs no database. A request carrying ``Authorization:
Bearer`` is authenticated by that header alone (its cookie, if any, is ignored), and a browser
never adds that header cross-site, so such requests are exempt.

Login CSRF: the sign-in and sign-up forms are posted before any session exists, and a forged
post would log the victim into the attacker's account. Those two forms carry a token tied to a
random pre-session cookie (``aethex_csrf``, HttpOnly, SameSite=Lax) that the form page sets; the
post must bring both. Other anonymous posts change nothing (they need a login), and the JSON API
only accepts ``application/json``, which no cross-site form can send without a CORS preflight.
The token is keyed with the server's secret too: someone who can plant that cookie (a sibling
subdomain, a man in the middle on plain HTTP) knows the cookie but still cannot compute its
token, so cannot forge the post.

The secret is 32 random bytes made on the first start and kept in ``data_dir/secret_key``
(mode 0600); processes sharing a data dir share it. Deleting it signs nobody out: it only makes
the pages open at that moment need a reload. The nodes of a cluster (issue 15) each have a data
dir, so they read one secret from ``cluster.secret_key_file`` instead, a file the operator puts
on every node: a form rendered by one node is posted to whichever the balancer picks, and an
unsubscribe link or VOD grant made by one is checked by another. Sessions need nothing of the
kind: they are rows in the shared database.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from mediaserver.settings import SettingsError
from storage import accounts, queries
from storage.models import Channel, User

from .errors import HOT_PREFIXES, ApiError, Handler
from .keys import CHAT_KEY, DB_KEY, SECRET_KEY, SETTINGS_KEY
from .parsing import read_form

SESSION_COOKIE = "aethex_session"
PRE_COOKIE = "aethex_csrf"
# The forms that create a session: posted by anonymous browsers, guarded by the pre-session token.
SESSION_FORMS = frozenset({"/auth/login", "/auth/register"})
_PRE_RE = re.compile(r"[A-Za-z0-9_-]{32,64}")
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

# Request-scoped storage keys.
# The logged-in user, or None once looked up and found anonymous.
USER_KEY: web.RequestKey[User | None] = web.RequestKey("aethex_identity_user")
# A session token issued while handling this request (login/register): its CSRF token is
# the one the response's page must carry, even though the request had no cookie yet.
NEW_SESSION_KEY = web.RequestKey("aethex_identity_new_session", str)
# Set when this request ended the session (logout): pages rendered now are anonymous.
ENDED_KEY = web.RequestKey("aethex_identity_ended", bool)
# A pre-session token made while rendering this response's sign-in form: set as its cookie.
PRE_KEY = web.RequestKey("aethex_identity_pre", str)

_CSRF_CONTEXT = b"aethex-csrf-v2"
SECRET_KEY_FILE = "secret_key"
_SECRET_RE = re.compile(r"[0-9a-f]{64}")
# What cluster.secret_key_file must hold, in its errors.
SECRET_HINT = "it must hold 64 hex digits (`openssl rand -hex 32`), the same file on every node"

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header ("" for a malformed one), else None."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip()


def session_cookie(request: web.Request) -> str | None:
    if request.get(ENDED_KEY):
        return None
    return request.get(NEW_SESSION_KEY) or request.cookies.get(SESSION_COOKIE) or None


class _Bookkeeping:
    """Whether bookkeeping writes are failing now: their failures are logged once per run."""

    failing = False


async def _bookkeeping(
    app: web.Application, what: str, write: Callable[[AsyncSession], Awaitable[Any]]
) -> None:
    """A write that only keeps a record (a token's last use), in its own transaction and best
    effort: when it fails (a full disk, a locked database) the request goes on without it.
    Authentication once wrote such a record in the same transaction as the lookup, so a full
    disk refused every API call."""
    try:
        async with app[DB_KEY].session() as session:
            await write(session)
            await session.commit()
    except (SQLAlchemyError, OSError) as exc:
        if not _Bookkeeping.failing:
            _Bookkeeping.failing = True
            log.warning(
                "could not record %s; going on without (logged once until it works again): %s",
                what,
                getattr(exc, "orig", None) or exc,
            )
        return
    if _Bookkeeping.failing:
        _Bookkeeping.failing = False
        log.warning("recording %s works again", what)


async def _resolve(request: web.Request) -> User | None:
    token = bearer_token(request)
    db = request.app[DB_KEY]
    if token is not None:
        if not token:
            return None
        async with db.session() as session:
            found = await queries.find_api_token(session, token)
        if found is None:
            return None
        api_token, user = found
        now = _now()
        if queries.token_use_due(api_token, now):
            await _bookkeeping(
                request.app,
                "API tokens' last use",
                functools.partial(queries.record_token_use, token_id=api_token.id, now=now),
            )
        return user
    cookie = session_cookie(request)
    if not cookie:
        return None
    async with db.session() as session:
        return await accounts.user_for_session(session, cookie, _now())


async def current_user(request: web.Request) -> User | None:
    """The logged-in user (profile loaded), or None; looked up once per request."""
    try:
        return request[USER_KEY]
    except KeyError:
        pass
    user = await _resolve(request)
    request[USER_KEY] = user
    return user


async def still_signed_in(request: web.Request, user_id: int) -> bool:
    """Whether the credentials this request came with (session cookie or bearer token) still
    belong to ``user_id``, asked afresh rather than from the answer cached on the request.

    For responses that outlive the moment they were authorised (an event stream): a logout, a
    revoked token or a disabled account must end them too, since privileges are checked when
    they are used, not only when the connection opens."""
    user = await _resolve(request)
    return user is not None and user.id == user_id


def set_current_user(request: web.Request, user: User | None) -> None:
    """Replace the cached answer (after login, logout, or a change to the user's own row)."""
    request[USER_KEY] = user


async def require_user(request: web.Request) -> User:
    user = await current_user(request)
    if user is None:
        raise ApiError(
            401, "unauthenticated", "log in first (session cookie or Authorization: Bearer TOKEN)"
        )
    return user


def require_admin(user: User) -> None:
    if not user.is_admin:
        raise ApiError(403, "forbidden", "only an administrator may do this")


def can_manage(user: User | None, channel: Channel) -> bool:
    """Whether ``user`` may change ``channel`` (and see its stream key): its owner or an admin."""
    return user is not None and (user.id == channel.owner_id or user.is_admin)


def require_manager(user: User, channel: Channel) -> None:
    if not can_manage(user, channel):
        raise ApiError(403, "forbidden", "only the channel's owner (or an admin) may do this")


def account_changed(app: web.Application, user_id: int) -> None:
    """Call after committing a change to a user's account, role or credentials (disable,
    promote/demote, logout, token revocation): their open chat sockets follow it on every
    process (see chat/principal.py). Harmless when the app has no chat."""
    service = app.get(CHAT_KEY)
    if service is not None:
        service.account_changed(user_id)


async def require_page_user(request: web.Request) -> User:
    """For HTML pages: the logged-in user, or a redirect to the login page that comes back."""
    user = await current_user(request)
    if user is None:
        raise web.HTTPSeeOther(f"/auth/login?next={quote(request.path_qs, safe='')}")
    return user


# -- session cookie ----------------------------------------------------------------------------


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    settings = request.app[SETTINGS_KEY]
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.auth.session_max_age,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=settings.http.secure_cookies,
    )
    request[NEW_SESSION_KEY] = token
    request.pop(ENDED_KEY, None)


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    settings = request.app[SETTINGS_KEY]
    response.del_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="Lax", secure=settings.http.secure_cookies
    )
    request[ENDED_KEY] = True
    request.pop(NEW_SESSION_KEY, None)
    request[USER_KEY] = None


async def start_session(request: web.Request, user: User) -> str:
    """Create a login session for ``user``; the caller puts it on its response with
    ``set_session_cookie``. Pages rendered for this request already see the new session."""
    settings = request.app[SETTINGS_KEY]
    async with request.app[DB_KEY].session() as session:
        token = await accounts.create_login_session(
            session, user.id, _now(), settings.auth.session_max_age
        )
        await session.commit()
    request[NEW_SESSION_KEY] = token
    request.pop(ENDED_KEY, None)
    request[USER_KEY] = user
    return token


async def end_session(request: web.Request, response: web.StreamResponse) -> None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        async with request.app[DB_KEY].session() as session:
            await accounts.delete_login_session(session, cookie)
            await session.commit()
    clear_session_cookie(request, response)


# -- CSRF ------------------------------------------------------------------------------------


def load_secret_key(data_dir: Path, shared_file: str = "") -> bytes:
    """The server's secret: from ``shared_file`` (``cluster.secret_key_file``) when set, which
    must exist (never made here: a node making its own would silently differ from the others),
    else from ``data_dir/secret_key``, made there (0600) if there is none.

    A new key is written to a private temporary file and published with ``link``, which fails
    if the name exists: two processes starting at once on a fresh data dir end up with the
    same key, and nobody ever reads a half-written one.
    """
    if shared_file:
        return _read_secret(Path(shared_file), "cluster.secret_key_file", SECRET_HINT)
    path = data_dir / SECRET_KEY_FILE
    if not path.exists():
        tmp = data_dir / f".{SECRET_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: use theirs
        finally:
            tmp.unlink(missing_ok=True)
    return _read_secret(path, "data_dir", "remove it and a new one is made at the next start")


def _read_secret(path: Path, setting: str, fix: str) -> bytes:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError as exc:
        raise SettingsError(
            setting, f"cannot read {path} ({exc.strerror}); {SECRET_HINT}"
        ) from None
    if not _SECRET_RE.fullmatch(text):
        raise SettingsError(
            setting, f"{path} is not a secret key made by aethex (64 hex digits); {fix}"
        )
    if path.stat().st_mode & 0o077:
        log.warning("%s can be read by other users: chmod 600 it", path)
    return bytes.fromhex(text)


def _csrf_for(request: web.Request, kind: bytes, cookie: str) -> str:
    """HMAC(server secret, kind of cookie + cookie): without the secret, knowing (or choosing)
    the cookie does not give the token."""
    message = _CSRF_CONTEXT + b"\0" + kind + b"\0" + cookie.encode("utf-8", "replace")
    return hmac.new(request.app[SECRET_KEY], message, hashlib.sha256).hexdigest()


def csrf_token(request: web.Request, anonymous: bool = False) -> str:
    """The CSRF token for this browser session ("" when there is no session cookie). With
    ``anonymous`` (the sign-in and sign-up forms) a browser without a session gets a token
    tied to its pre-session cookie, which is made (and set on the response) if it has none."""
    cookie = session_cookie(request)
    if cookie:
        return _csrf_for(request, b"session", cookie)
    if not anonymous:
        return ""
    pre = request.get(PRE_KEY) or request.cookies.get(PRE_COOKIE, "")
    if not _PRE_RE.fullmatch(pre):
        pre = request[PRE_KEY] = secrets.token_urlsafe(32)
    return _csrf_for(request, b"pre", pre)


async def _check_csrf(request: web.Request) -> None:
    if bearer_token(request) is not None:
        return  # authenticated by the header alone; the cookie is ignored
    cookie, kind = request.cookies.get(SESSION_COOKIE), b"session"
    if not cookie:
        if request.path not in SESSION_FORMS:
            return  # nothing a forged request could borrow
        cookie, kind = request.cookies.get(PRE_COOKIE, ""), b"pre"
        if not _PRE_RE.fullmatch(cookie):
            raise ApiError(
                403,
                "csrf_failed",
                "the sign-in form's cookie did not come back: allow cookies for this "
                "site and reload the page",
            )
    supplied: Any = request.headers.get(CSRF_HEADER)
    if supplied is None and request.content_type in FORM_TYPES:
        form = await read_form(request)
        supplied = form.get(CSRF_FIELD)
    expected = _csrf_for(request, kind, cookie)
    if not isinstance(supplied, str) or not hmac.compare_digest(
        supplied.encode("utf-8", "replace"), expected.encode("ascii")
    ):
        raise ApiError(
            403,
            "csrf_failed",
            "missing or wrong CSRF token: reload the page and try again (API clients: "
            f"send the {CSRF_HEADER} header, or use Authorization: Bearer)",
        )


@web.middleware
async def identity_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path.startswith(HOT_PREFIXES):
        return await handler(request)
    # Not reset afterwards on purpose: the error middleware outside renders error pages after
    # this returns, and they should still show who is logged in. The variable lives in this
    # connection's task; the next request on it sets its own before rendering anything.
    _CURRENT_REQUEST.set(request)
    if request.method in UNSAFE_METHODS:
        await _check_csrf(request)
    elif not path.startswith(("/api/", "/ws/")) and SESSION_COOKIE in request.cookies:
        # Pages show who is logged in in the header, and Jinja cannot await: resolve it now.
        # Only page views with a session cookie pay for this lookup.
        await current_user(request)
    response = await handler(request)
    pre = request.get(PRE_KEY)
    if pre is not None and not response.prepared:
        response.set_cookie(
            PRE_COOKIE,
            pre,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=request.app[SETTINGS_KEY].http.secure_cookies,
        )
    return response


# -- templates -------------------------------------------------------------------------------

# The request a template is being rendered for, set by the middleware, so template helpers
# need no request passed in by every page handler.
_CURRENT_REQUEST: contextvars.ContextVar[web.Request | None] = contextvars.ContextVar(
    "aethex_current_request", default=None
)


def _template_csrf_token(anonymous: bool = False) -> str:
    request = _CURRENT_REQUEST.get()
    return csrf_token(request, anonymous) if request is not None else ""


def _template_user() -> User | None:
    request = _CURRENT_REQUEST.get()
    return request.get(USER_KEY) if request is not None else None


def upload_url(name: str | None) -> str | None:
    """Public URL of a stored upload (see webapp.uploads), or None."""
    return f"/uploads/{name}" if name else None


def user_json(user: User, *, private: bool = False) -> dict[str, Any]:
    """A user as the API shows them. ``private`` adds what only the user (or an admin) sees."""
    profile = user.profile
    data: dict[str, Any] = {
        "id": user.id,
        "username": user.username,
        "display_name": profile.display_name if profile else user.username,
        "bio": profile.bio if profile else "",
        "avatar_url": upload_url(profile.avatar_path) if profile else None,
        "banner_url": upload_url(profile.banner_path) if profile else None,
        "social_links": dict(profile.social_links or {}) if profile else {},
        "is_admin": user.is_admin,
        "created_at": user.created_at.isoformat(),
    }
    if private:
        data.update(
            {
                "email": user.email,
                "theme": profile.theme if profile else "dark",
                "language": profile.language if profile else "en",
                "is_disabled": user.is_disabled,
                "onboarded": user.onboarded_at is not None,
                "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
            }
        )
    return data


def setup(app: web.Application) -> None:
    """Install the identity middleware and the template helpers (after render.setup)."""
    settings = app[SETTINGS_KEY]
    app[SECRET_KEY] = load_secret_key(settings.data_dir, settings.cluster.secret_key_file)
    env = aiohttp_jinja2.get_env(app)
    env.globals["csrf_token"] = _template_csrf_token
    env.globals["current_user"] = _template_user
    env.globals["upload_url"] = upload_url
    app.middlewares.append(identity_middleware)
