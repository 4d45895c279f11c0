"""Who is watching, for views counted once per viewer session (issue 13: videos and clips).

A logged-in viewer is their user id; anyone else is an anonymous viewer cookie made on their
first view. Either way only a hash is stored (``MediaView.viewer_key``), so the table never
holds a session's secret.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from aiohttp import web

from .identity import current_user
from .keys import SETTINGS_KEY

VIEWER_COOKIE = "aethex_viewer"
VIEWER_COOKIE_SECONDS = 365 * 86400
_COOKIE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")


async def viewer_key(request: web.Request) -> tuple[str, str | None]:
    """This viewer's key, and the new anonymous cookie to set (None: nothing to set)."""
    user = await current_user(request)
    if user is not None:
        return hashlib.sha256(f"user:{user.id}".encode()).hexdigest(), None
    cookie = request.cookies.get(VIEWER_COOKIE, "")
    new = None
    if not _COOKIE_RE.fullmatch(cookie):
        cookie = new = secrets.token_urlsafe(18)
    return hashlib.sha256(f"anon:{cookie}".encode()).hexdigest(), new


def set_viewer_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(
        VIEWER_COOKIE,
        value,
        max_age=VIEWER_COOKIE_SECONDS,
        httponly=True,
        samesite="Lax",
        secure=request.app[SETTINGS_KEY].http.secure_cookies,
        path="/",
    )
