"""Server-side pages: the one template environment, the headers every page carries, and the
helpers every area's pages answer with (render, redirect after a form, form values, errors).

``setup(app)`` makes the Jinja2 environment before any area registers a page; the areas then
add their globals to it (``identity.setup``) and render through ``render``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from storage.errors import ConflictError, NotFoundError, ValidationError

from .errors import ApiError

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

# The pages load only our own scripts, styles and media. hls.js runs its transmuxer in a
# blob: worker and feeds the <video> through a blob: MediaSource URL.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


class Assets:
    """``asset('css/site.css')`` -> ``/static/css/site.css?v=<content hash>`` for cache busting."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, tuple[float, str]] = {}

    def __call__(self, name: str) -> str:
        path = self.root / name
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return f"/static/{name}"
        cached = self._cache.get(name)
        if cached is None or cached[0] != mtime:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            cached = self._cache[name] = (mtime, digest)
        return f"/static/{name}?v={cached[1]}"


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers.update(PAGE_HEADERS)
    return response


def not_found_page(request: web.Request, what: str) -> web.Response:
    return render(request, "404.html", {"what": what}, status=404)


def redirect(location: str) -> web.Response:
    """A 303 to ``location`` as a plain response, so a session cookie can ride on it."""
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def form_text(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def message_of(exc: Exception) -> tuple[int, str]:
    """The status and the message a form page shows for a refused change (re-raises others)."""
    if isinstance(exc, ApiError):
        return exc.status, exc.message
    if isinstance(exc, ValidationError):
        return 400, str(exc)
    if isinstance(exc, ConflictError):
        return 409, str(exc)
    if isinstance(exc, NotFoundError):
        return 404, str(exc)
    raise exc


def setup(app: web.Application) -> None:
    """The Jinja2 environment of every page: autoescaped, strict about undefined names."""
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["asset"] = Assets(STATIC_DIR)
