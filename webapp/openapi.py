"""``/api/openapi.json``: one OpenAPI 3.1 document built from the fragments each module keeps,
and the pieces those fragments share (the error answer, the slug parameter, the user schemas).

Every module that registers ``/api/`` routes describes them beside its handlers in a
module-level ``OPENAPI_PATHS`` (``{path: {method: operation}}``) and, if it needs them, its
schemas in ``OPENAPI_SCHEMAS``. This module walks the ``webapp`` package, merges what it finds
and refuses to merge two descriptions of the same operation or two different schemas under
one name (a quiet overwrite would hide a route). ``tests`` check the result against the
router, so a route nobody described fails the suite.

A leaf of the package: the areas import their OpenAPI helpers from here, so it must not import
them back. It finds their fragments at start-up by walking the package's directory, once
``app.py`` has imported and set up every area.
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from .keys import OPENAPI_DOC_KEY

OPENAPI_VERSION = "3.1.0"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Stable, for programs."},
                "message": {"type": "string", "description": "For people."},
            },
        }
    },
}


def error_response(description: str) -> dict[str, Any]:
    """An answer in the project's error shape (``ERROR_SCHEMA``), with its own description."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# The ``{slug}`` path parameter of every route under a channel.
SLUG_PARAM: dict[str, Any] = {
    "name": "slug",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}

# A user as ``identity.user_json`` shows them, to others and to themselves (or an admin).
PUBLIC_USER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "username",
        "display_name",
        "bio",
        "avatar_url",
        "banner_url",
        "social_links",
        "is_admin",
        "created_at",
    ],
    "properties": {
        "id": {"type": "integer"},
        "username": {"type": "string"},
        "display_name": {"type": "string"},
        "bio": {"type": "string"},
        "avatar_url": {"type": ["string", "null"]},
        "banner_url": {"type": ["string", "null"]},
        "social_links": {"type": "object", "additionalProperties": {"type": "string"}},
        "is_admin": {"type": "boolean"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
PRIVATE_USER_SCHEMA: dict[str, Any] = {
    **PUBLIC_USER_SCHEMA,
    "description": "The user as they (or an admin) see themselves: adds email and settings.",
    "properties": {
        **PUBLIC_USER_SCHEMA["properties"],
        "email": {"type": "string"},
        "theme": {"type": "string", "enum": ["dark", "light"]},
        "language": {"type": "string"},
        "is_disabled": {"type": "boolean"},
        "onboarded": {"type": "boolean"},
        "last_login_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
USER_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "required": ["user"],
    "properties": {"user": PRIVATE_USER_SCHEMA},
}


# Routes whose modules are not API modules: the viewer page's poll and this document.
CORE_PATHS: dict[str, Any] = {
    "/api/openapi.json": {
        "get": {
            "summary": "This document",
            "tags": ["meta"],
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}
            },
        },
    },
    "/api/channels/{slug}/live": {
        "parameters": [
            {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "get": {
            "summary": "Whether a channel is live (what the player page polls)",
            "tags": ["channels"],
            "responses": {
                "200": {
                    "description": "Live status",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "live": {"type": "boolean"},
                                    "playable": {"type": "boolean"},
                                    "stream_id": {"type": ["integer", "null"]},
                                    "title": {"type": "string"},
                                    "category": {"type": ["string", "null"]},
                                    "tags": {"type": "array", "items": {"type": "string"}},
                                    "viewers": {"type": "integer"},
                                    "started_at": {"type": ["string", "null"]},
                                    "creator": {"type": "string"},
                                    "hls_url": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "404": {"description": "No such channel"},
            },
        },
    },
}

CORE_SCHEMAS: dict[str, Any] = {"Error": ERROR_SCHEMA}

CORE_RESPONSES: dict[str, Any] = {
    "BadRequest": error_response(
        "Bad input: missing or wrongly typed fields, values too long, malformed JSON"
    ),
    "Unauthenticated": error_response(
        "Not logged in: send the session cookie (with "
        "X-CSRF-Token on writes) or Authorization: Bearer"
    ),
    "Forbidden": error_response("Logged in, but not allowed (not the owner, CSRF token missing)"),
    "NotFound": error_response("No such object"),
    "Conflict": error_response("Clashes with the current state (taken slug, live stream)"),
    "PayloadTooLarge": error_response(
        "The body is larger than the server takes "
        "(http.max_json_bytes for JSON, uploads.max_bytes for "
        "images)"
    ),
    "UnsupportedMediaType": error_response(
        "The body is not of the documented type "
        "(Content-Type: application/json, or "
        "multipart/form-data for uploads)"
    ),
}

# What the shared request readers (webapp.parsing) answer, by what an operation takes.
_BODY_RESPONSES = {"400": "BadRequest", "413": "PayloadTooLarge", "415": "UnsupportedMediaType"}
_QUERY_RESPONSES = {"400": "BadRequest"}


def api_modules() -> Iterable[Any]:
    """Every module of the ``webapp`` package (its own fragments come first).

    By its directory, not ``import webapp``: the modules are already imported when this runs
    (at start-up), and an import of the package here would close a cycle through ``app.py``.
    """
    for info in pkgutil.walk_packages([str(Path(__file__).parent)], prefix=f"{__package__}."):
        if info.name == __name__:
            continue
        yield importlib.import_module(info.name)


def merge(fragments: Iterable[tuple[str, dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """Merge ``(source, paths, schemas)`` fragments; ValueError on any double definition."""
    paths: dict[str, dict[str, Any]] = {}
    owners: dict[tuple[str, str], str] = {}
    schemas: dict[str, Any] = {}
    schema_owner: dict[str, str] = {}
    for source, frag_paths, frag_schemas in fragments:
        for path, item in frag_paths.items():
            if not path.startswith("/api/"):
                raise ValueError(f"{source}: {path!r} is not under /api/")
            target = paths.setdefault(path, {})
            for key, value in item.items():
                if key in METHODS:
                    if (path, key) in owners:
                        raise ValueError(
                            f"{key.upper()} {path} is described by both "
                            f"{owners[(path, key)]} and {source}"
                        )
                    owners[(path, key)] = source
                    target[key] = value
                elif key in target and target[key] != value:
                    raise ValueError(f"{path}: {key!r} differs between fragments ({source})")
                else:
                    target[key] = value
        for name, schema in frag_schemas.items():
            if name in schemas and schemas[name] != schema:
                raise ValueError(
                    f"schema {name!r} is defined by both {schema_owner[name]} and {source}"
                )
            schemas[name] = schema
            schema_owner[name] = source
    return {"paths": dict(sorted(paths.items())), "schemas": dict(sorted(schemas.items()))}


def add_shared_responses(paths: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A copy of ``paths`` where every operation lists the statuses the shared readers give.

    Any operation with a body can get a malformed, oversized or mistyped one, and any
    operation with query parameters a bad value; the readers of ``webapp.parsing`` answer
    those with 400, 413 and 415 whatever the handler. Added here, each module's fragment need
    not repeat them (nor forget one, which schemathesis then reports as undocumented).
    """
    out = copy.deepcopy(paths)
    for item in out.values():
        shared = item.get("parameters", [])
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            added = dict(_BODY_RESPONSES) if "requestBody" in operation else {}
            if any(p.get("in") == "query" for p in [*shared, *operation.get("parameters", [])]):
                added.update(_QUERY_RESPONSES)
            for code, name in added.items():
                responses.setdefault(code, {"$ref": f"#/components/responses/{name}"})
    return out


def build_document() -> dict[str, Any]:
    fragments: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        (__name__, CORE_PATHS, CORE_SCHEMAS)
    ]
    seen: set[int] = set()
    for module in api_modules():
        paths = getattr(module, "OPENAPI_PATHS", None) or {}
        schemas = getattr(module, "OPENAPI_SCHEMAS", None) or {}
        # A package re-exporting a submodule's fragment holds the very same dict: once only.
        paths = {} if id(paths) in seen else paths
        schemas = {} if id(schemas) in seen else schemas
        seen.update((id(paths), id(schemas)))
        if paths or schemas:
            fragments.append((module.__name__, paths, schemas))
    merged = merge(fragments)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "AeThex Live API",
            "version": "1",
            "description": 'JSON in and out. Errors: {"error": {"code", "message"}} '
            "with the HTTP status. Authenticate with the session cookie "
            "(writes also need the X-CSRF-Token header) or "
            "Authorization: Bearer TOKEN (`aethex token create`).",
        },
        "servers": [{"url": "/"}],
        "paths": add_shared_responses(merged["paths"]),
        "components": {
            "schemas": merged["schemas"],
            "responses": CORE_RESPONSES,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "aethex_session"},
            },
        },
        "security": [{}, {"bearer": []}, {"session": []}],
    }


async def openapi_view(request: web.Request) -> web.Response:
    cache = request.app[OPENAPI_DOC_KEY]
    if "doc" not in cache:
        cache["doc"] = build_document()
    return web.json_response(cache["doc"], headers={"Cache-Control": "no-cache"})


async def _build_on_startup(app: web.Application) -> None:
    # Built once, after every module has registered its routes: a broken fragment stops the
    # server at start, not on the first request.
    app[OPENAPI_DOC_KEY]["doc"] = build_document()


def setup(app: web.Application) -> None:
    app[OPENAPI_DOC_KEY] = {}
    app.router.add_get("/api/openapi.json", openapi_view)
    app.on_startup.append(_build_on_startup)
