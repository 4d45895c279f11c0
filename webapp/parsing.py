"""Reading what clients send: JSON bodies and frames, forms, integer query and path parameters.

Every handler reads client input through these few functions, so each kind of bad input has one
answer, a 4xx in the API error shape (``webapp.errors``), and never a 500 with a traceback in
the log. The holes they close were all found by feeding the API hostile input:

- deeply nested JSON: Python's decoder recurses per level and raises ``RecursionError``, which
  is not a ``ValueError``, so ``except ValueError`` let a 4 KB ``[[[[...`` through as a 500;
- JSON bodies read whole into memory up to the upload limit (megabytes) although no JSON body
  of ours needs more than a few kilobytes;
- integers Python accepts but the database cannot store (SQLite and PostgreSQL integers are
  64-bit: ``?before=100000000000000000000000`` raised OverflowError in the driver), and
  strings ``str.isdigit`` accepts but ``int`` does not (``"²"``);
- malformed forms (a multipart body without a boundary, a non-UTF-8 urlencoded body).

The limits (``http.max_json_bytes``, ``http.max_json_depth``) are settings.
"""

from __future__ import annotations

import json
import re
from typing import Any, overload

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from .errors import ApiError
from .keys import SETTINGS_KEY

# Database integer columns (ids) are signed 64-bit on SQLite and PostgreSQL alike.
INT64_MAX = 2**63 - 1

# ASCII only: ``int()`` also takes "٣", "1_000" and surrounding blanks, which no client means.
_INT_RE = re.compile(r"-?[0-9]{1,19}")
_ID_RE = re.compile(r"[1-9][0-9]{0,18}")
# A JSON string (skipped whole, so brackets inside it do not count) or one bracket.
_NESTING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


class BadJson(ValueError):
    """JSON from a client that we refuse: malformed, not UTF-8, or nested too deeply."""


def _reject_constant(name: str) -> Any:
    raise BadJson(f"{name} is not a JSON value")


def _int64(literal: str) -> int:
    value = int(literal)
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise BadJson(f"the integer {literal[:24]}... does not fit in 64 bits")
    return value


def _nesting_exceeds(text: str, max_depth: int) -> bool:
    # Cheap exit for the usual case: fewer opening brackets than the limit cannot nest past it.
    if text.count("[") + text.count("{") <= max_depth:
        return False
    depth = 0
    for match in _NESTING_RE.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif token in "]}":
            depth -= 1
    return False


def parse_json(data: str | bytes, max_depth: int) -> Any:
    """Decode client JSON (UTF-8 when bytes); ``BadJson`` saying why for anything we refuse.

    Nesting is checked before decoding: the decoder would recurse once per level, and a
    structure that decodes just under the interpreter's limit can still overflow it later
    (encoding it again, comparing it). Integers must fit in 64 bits, as every integer we
    store or look up does (ids, seconds); NaN and Infinity are not JSON and are refused too.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadJson("JSON must be UTF-8 text") from None
    else:
        text = data
    if _nesting_exceeds(text, max_depth):
        raise BadJson(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_int64)
    except BadJson:
        raise
    except RecursionError:  # unreachable after the depth check; kept as the last line
        raise BadJson(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError:
        raise BadJson("malformed JSON") from None


async def _read_bounded(request: web.Request, limit: int) -> bytes:
    too_large = ApiError(413, "payload_too_large", f"a JSON body may be at most {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    while len(body) <= limit:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        raise too_large
    return bytes(body)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 4xx ApiError saying what is wrong with it."""
    if request.content_type != "application/json":
        raise ApiError(
            415, "unsupported_media_type", "send a JSON body (Content-Type: application/json)"
        )
    limits = request.app[SETTINGS_KEY].http
    raw = await _read_bounded(request, limits.max_json_bytes)
    try:
        body = parse_json(raw, limits.max_json_depth)
    except BadJson as exc:
        raise ApiError(400, "invalid_json", f"bad request body: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object")
    return body


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """``request.post()``, with a malformed form answered as a 400 instead of a 500.

    aiohttp raises ValueError for a multipart type without a boundary or a field without a
    name, UnicodeDecodeError for a non-UTF-8 urlencoded body, LookupError for an unknown
    charset and its HTTP parser's errors for bad part headers. Too large stays a 413.
    """
    try:
        return await request.post()
    except (ValueError, LookupError, HttpProcessingError):
        raise ApiError(400, "invalid_form", "the form data is malformed") from None


def field(
    body: dict[str, Any],
    name: str,
    kind: type | tuple[type, ...] = str,
    *,
    required: bool = True,
    default: Any = None,
) -> Any:
    """``body[name]`` checked for presence and type; ApiError 400 naming the field otherwise."""
    if name not in body or body[name] is None:
        if required:
            raise ApiError(400, "missing_field", f"the field {name!r} is required")
        return default
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ApiError(400, "invalid", f"the field {name!r} has the wrong type")
    if not isinstance(value, kinds):
        expected = " or ".join(_json_type(k.__name__) for k in kinds)
        raise ApiError(400, "invalid", f"the field {name!r} must be a {expected}")
    return value


def _json_type(python_name: str) -> str:
    return {
        "str": "string",
        "int": "integer",
        "bool": "boolean",
        "dict": "object",
        "list": "array",
        "float": "number",
    }.get(python_name, python_name)


def parse_int(raw: str, minimum: int = -INT64_MAX - 1, maximum: int = INT64_MAX) -> int | None:
    """``raw`` as an integer in ``minimum..maximum`` (ASCII digits, optional minus), else None."""
    if not _INT_RE.fullmatch(raw):
        return None
    value = int(raw)
    return value if minimum <= value <= maximum else None


def parse_id(raw: str) -> int | None:
    """``raw`` as a database id (1 to 2**63-1, no sign, no leading zero), else None."""
    if not _ID_RE.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= INT64_MAX else None


@overload
def query_int(
    request: web.Request, name: str, default: int, *, minimum: int = 0, maximum: int = INT64_MAX
) -> int: ...
@overload
def query_int(
    request: web.Request,
    name: str,
    default: None = None,
    *,
    minimum: int = 0,
    maximum: int = INT64_MAX,
) -> int | None: ...
def query_int(
    request: web.Request,
    name: str,
    default: int | None = None,
    *,
    minimum: int = 0,
    maximum: int = INT64_MAX,
) -> int | None:
    """The query parameter ``name`` as an integer within bounds; ``default`` when absent or
    empty; a 400 naming the parameter and its range otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    value = parse_int(raw, minimum, maximum)
    if value is None:
        raise ApiError(
            400,
            "invalid",
            f"the query parameter {name!r} must be an integer from {minimum} to {maximum}",
        )
    return value


def path_id(request: web.Request, name: str, what: str) -> int:
    """The path parameter ``name`` as a database id; a 404 for anything that cannot be one
    (no object has that id, so "not found" is the true answer, as for an unknown id)."""
    raw = request.match_info[name]
    value = parse_id(raw)
    if value is None:
        raise ApiError(404, "not_found", f"no {what} with id {raw[:40]!r}")
    return value
