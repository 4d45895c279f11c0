"""One error shape for the JSON API: ``{"error": {"code": ..., "message": ...}}``.

Handlers raise ``ApiError`` (or let a storage ``ValidationError``/``ConflictError``/
``NotFoundError`` escape) and the middleware here renders it, so no handler builds error
bodies by hand and clients can switch on ``code`` without parsing prose. aiohttp's own HTTP
exceptions (404 for an unknown route, 405, 413 for a body over the size limit) get the same
shape under ``/api/``. Outside ``/api/`` an ApiError becomes a small HTML page. Reading the
input that leads to these errors (JSON bodies, forms, integer parameters) is ``webapp.parsing``;
requests too malformed to reach a handler are kept out of the error log here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import aiohttp_jinja2
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from storage.errors import ConflictError, NotFoundError, ValidationError, out_of_room

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths every middleware of ours leaves alone at once: media delivery, public files and scrapes
# must not pay for cookie parsing or a database lookup.
HOT_PREFIXES = ("/hls/", "/vod/", "/static/", "/thumbnails/", "/metrics", "/uploads/")

ERROR_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class ApiError(Exception):
    """An error meant for the client: HTTP ``status``, a stable ``code``, a human ``message``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def json_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}},
        status=status,
        headers={**ERROR_HEADERS, **(headers or {})},
    )


def from_storage(exc: Exception) -> ApiError:
    """The API error for a storage-layer error (its message is written for the user)."""
    if isinstance(exc, ValidationError):
        return ApiError(400, "invalid", str(exc))
    if isinstance(exc, ConflictError):
        return ApiError(409, "conflict", str(exc))
    if isinstance(exc, NotFoundError):
        return ApiError(404, "not_found", str(exc))
    raise TypeError(f"not a storage error: {exc!r}")


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _html_error(request: web.Request, err: ApiError) -> web.Response:
    response = aiohttp_jinja2.render_template(
        "auth/error.html",
        request,
        {"status": err.status, "message": err.message},
        status=err.status,
    )
    response.headers.update({**ERROR_HEADERS, **err.headers})
    return response


_KEPT_HEADERS = frozenset({"Allow", "Retry-After"})


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(HOT_PREFIXES):
        return await handler(request)
    try:
        return await handler(request)
    except (ValidationError, ConflictError, NotFoundError) as exc:
        err = from_storage(exc)
    except ApiError as exc:
        err = exc
    except web.HTTPException as exc:
        if not is_api(request) or exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        # Allow (405) and Retry-After (429, 503) are part of the answer (RFC 9110).
        kept = {k: v for k, v in exc.headers.items() if k in _KEPT_HEADERS}
        return json_error(exc.status, _code_for(exc.status), message or exc.reason, kept)
    except Exception as exc:
        # A full disk (or a database on one) is the server's condition, not a bug in the
        # request: every route answers it with 507 and the log gets one line, no traceback.
        if not out_of_room(exc):
            raise
        log.warning("%s %s: no room on disk: %s", request.method, request.path, exc)
        err = ApiError(
            507,
            "insufficient_storage",
            "the server has no room to store this right now; nothing was changed, try again later",
        )
    if is_api(request) or request.headers.get("Accept", "").startswith("application/json"):
        return json_error(err.status, err.code, err.message, err.headers)
    return _html_error(request, err)


class ClientErrorLogFilter(logging.Filter):
    """Keeps malformed requests out of the error log: they are the client's fault.

    aiohttp answers a request it cannot parse (a NUL byte in a header, a bad chunk size) with a
    400 itself, but logs it at ERROR with a traceback. Anyone can send such requests, so at that
    level they would fill the log and bury real errors. They become DEBUG lines without the
    traceback, as aiohttp already does for a bad method.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.msg, record.args = f"{record.getMessage()}: {exc.message!r}"[:500], ()
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info, record.exc_text = None, None
        return True


CLIENT_ERROR_LOG_FILTER = ClientErrorLogFilter()


def quiet_client_errors() -> None:
    """Install the filter on aiohttp's server logger (once, however many apps are made)."""
    logging.getLogger("aiohttp.server").addFilter(CLIENT_ERROR_LOG_FILTER)
