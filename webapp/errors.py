"""One error shape for the JSON API: ``{"error": {"code": ..., "message": ...}}``.

Handlers raise ``ApiError`` (or let a storage ``ValidationError``/``ConflictError``/
``NotFoundError`` escape) and the middleware here renders it, so no handler builds error
bodies by hand and clients can switch on ``code`` without parsing prose. aiohttp's own HTTP
exceptions (404 for an unknown route, 405, 413 for a body over the size limit) get the same
shape under ``/api/``. Outside ``/api/`` an ApiError becomes a small HTML page.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Awaitable, Callable

from aiohttp import web

from storage.errors import ConflictError, NotFoundError, ValidationError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths every middleware of ours leaves alone at once: media delivery, public files and scrapes
# must not pay for cookie parsing or a database lookup.
HOT_PREFIXES = ("/hls/", "/vod/", "/static/", "/thumbnails/", "/metrics", "/uploads/")

ERROR_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class ApiError(Exception):
    """An error meant for the client: HTTP ``status``, a stable ``code``, a human ``message``."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def json_error(status: int, code: str, message: str,
               headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status,
                             headers={**ERROR_HEADERS, **(headers or {})})


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
    import aiohttp_jinja2

    response = aiohttp_jinja2.render_template(
        "auth/error.html", request, {"status": err.status, "message": err.message},
        status=err.status)
    response.headers.update({**ERROR_HEADERS, **err.headers})
    return response


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
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") \
            else exc.reason
        return json_error(exc.status, _code_for(exc.status), message or exc.reason)
    if is_api(request) or request.headers.get("Accept", "").startswith("application/json"):
        return json_error(err.status, err.code, err.message, err.headers)
    return _html_error(request, err)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 ApiError saying what is wrong with it."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send a JSON body (Content-Type: application/json)")
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object")
    return body


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...] = str, *,
          required: bool = True, default: Any = None) -> Any:
    """``body[name]`` checked for presence and type; ApiError 400 naming the field otherwise."""
    if name not in body or body[name] is None:
        if required:
            raise ApiError(400, "missing_field", f"the field {name!r} is required")
        return default
    value = body[name]
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ApiError(400, "invalid", f"the field {name!r} has the wrong type")
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        expected = " or ".join(_json_type(k.__name__) for k in kinds)
        raise ApiError(400, "invalid", f"the field {name!r} must be a {expected}")
    return value


def _json_type(python_name: str) -> str:
    return {"str": "string", "int": "integer", "bool": "boolean", "dict": "object",
            "list": "array", "float": "number"}.get(python_name, python_name)
