"""The catalogue's JSON API: ``GET /api/categories`` (anyone: the active entries, for pickers)
and ``GET /api/categories/{slug}``; admins only, checked on every request: ``POST
/api/categories``, ``PATCH /api/categories/{slug}`` (edit, rename, retire with
``"retired": true`` and bring back with ``false``), ``POST/DELETE /api/categories/{slug}/boxart``
(the image goes through ``webapp.images`` like every upload)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import categories
from storage.discovery_models import Category

from .. import images
from ..keys import DB_KEY, SETTINGS_KEY
from ..openapi import error_response, json_body, json_response
from ..parsing import read_json
from .common import (
    CATEGORY_SCHEMA,
    category_json,
    change_box_art,
    create_entry,
    not_found,
    require_admin_user,
    update_entry,
)

NO_STORE = {"Cache-Control": "no-store"}


async def _entry(request: web.Request) -> Category:
    slug = request.match_info["slug"]
    async with request.app[DB_KEY].session() as session:
        entry = await categories.get_by_slug(session, slug)
    if entry is None:
        raise not_found(slug)
    return entry


async def list_api(request: web.Request) -> web.Response:
    limit = request.app[SETTINGS_KEY].browse.categories_max
    async with request.app[DB_KEY].session() as session:
        entries = await categories.list_categories(session, limit=limit)
    return web.json_response(
        {"categories": [category_json(e) for e in entries]},
        headers={"Cache-Control": "public, max-age=10"},
    )


async def get_api(request: web.Request) -> web.Response:
    return web.json_response(category_json(await _entry(request)), headers=NO_STORE)


async def create_api(request: web.Request) -> web.Response:
    await require_admin_user(request)
    body = await read_json(request)
    entry = await create_entry(request.app, body)
    return web.json_response(
        category_json(entry),
        status=201,
        headers={**NO_STORE, "Location": f"/api/categories/{entry.slug}"},
    )


async def patch_api(request: web.Request) -> web.Response:
    await require_admin_user(request)
    entry = await _entry(request)
    body = await read_json(request)
    updated = await update_entry(request.app, entry.id, body)
    return web.json_response(category_json(updated), headers=NO_STORE)


async def upload_box_art_api(request: web.Request) -> web.Response:
    await require_admin_user(request)  # before the body is read (and decoded)
    entry = await _entry(request)
    image = await images.read_image(request, images.BOXART)
    updated = await change_box_art(request.app, entry.id, image)
    body = category_json(updated)
    return web.json_response(
        {
            "category": body,
            "url": body["box_art_url"],
            "width": image.width,
            "height": image.height,
        },
        headers=NO_STORE,
    )


async def remove_box_art_api(request: web.Request) -> web.Response:
    await require_admin_user(request)
    entry = await _entry(request)
    updated = await change_box_art(request.app, entry.id, None)
    return web.json_response({"category": category_json(updated)}, headers=NO_STORE)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/categories", list_api)
    app.router.add_post("/api/categories", create_api)
    app.router.add_get("/api/categories/{slug}", get_api)
    app.router.add_patch("/api/categories/{slug}", patch_api)
    app.router.add_post("/api/categories/{slug}/boxart", upload_box_art_api)
    app.router.add_delete("/api/categories/{slug}/boxart", remove_box_art_api)


# -- OpenAPI -------------------------------------------------------------------------------

_CATEGORY = {"$ref": "#/components/schemas/Category"}
_SLUG = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
_WRITE_ERRORS = {
    "400": error_response("Invalid fields (unknown field, empty name, bad slug)"),
    "401": error_response("Not logged in"),
    "403": error_response("Not an administrator, or missing CSRF token"),
}
_INPUT_PROPERTIES: dict[str, Any] = {
    "name": {"type": "string", "maxLength": categories.NAME_MAX},
    "slug": {
        "type": "string",
        "pattern": categories.SLUG_RE.pattern,
        "description": "Default (on create): made from the name.",
    },
    "description": {"type": ["string", "null"], "maxLength": categories.DESCRIPTION_MAX},
    "retired": {
        "type": "boolean",
        "description": "true: hidden from pickers and /categories (channels keep it); "
        "false: active again.",
    },
}

OPENAPI_SCHEMAS: dict[str, Any] = {"Category": CATEGORY_SCHEMA}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/categories": {
        "get": {
            "summary": "The active categories of the catalogue, by name",
            "tags": ["categories"],
            "responses": {
                "200": json_response(
                    "Categories",
                    {
                        "type": "object",
                        "required": ["categories"],
                        "properties": {"categories": {"type": "array", "items": _CATEGORY}},
                    },
                )
            },
        },
        "post": {
            "summary": "Add a category (admins only)",
            "tags": ["categories"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": _INPUT_PROPERTIES,
                }
            ),
            "responses": {
                "201": json_response("Created", _CATEGORY),
                **_WRITE_ERRORS,
                "409": error_response("Name or slug taken"),
            },
        },
    },
    "/api/categories/{slug}": {
        "parameters": [_SLUG],
        "get": {
            "summary": "A category (retired ones too)",
            "tags": ["categories"],
            "responses": {
                "200": json_response("The category", _CATEGORY),
                "404": error_response("No such category"),
            },
        },
        "patch": {
            "summary": "Edit, rename, retire or bring back a category (admins only); a new name "
            "shows on every channel and broadcast that has it",
            "tags": ["categories"],
            "requestBody": json_body(
                {"type": "object", "additionalProperties": False, "properties": _INPUT_PROPERTIES}
            ),
            "responses": {
                "200": json_response("Updated", _CATEGORY),
                **_WRITE_ERRORS,
                "404": error_response("No such category"),
                "409": error_response("Name or slug taken"),
            },
        },
    },
    "/api/categories/{slug}/boxart": {
        "parameters": [_SLUG],
        "post": {
            "summary": "Upload the category's box art (admins only; re-encoded to fit "
            "uploads.boxart_width x uploads.boxart_height, metadata dropped)",
            "tags": ["categories"],
            "requestBody": images.IMAGE_REQUEST_BODY,
            "responses": {
                "200": json_response(
                    "Stored",
                    {
                        "type": "object",
                        "required": ["category", "url", "width", "height"],
                        "properties": {
                            "category": _CATEGORY,
                            "url": {"type": "string"},
                            "width": {"type": "integer"},
                            "height": {"type": "integer"},
                        },
                    },
                ),
                **images.image_upload_errors(),
                "403": error_response("Not an administrator, or missing CSRF token"),
                "404": error_response("No such category"),
            },
        },
        "delete": {
            "summary": "Remove the category's box art (admins only)",
            "tags": ["categories"],
            "responses": {
                "200": json_response(
                    "Removed (also when there was none)",
                    {
                        "type": "object",
                        "required": ["category"],
                        "properties": {"category": _CATEGORY},
                    },
                ),
                "401": error_response("Not logged in"),
                "403": error_response("Not an administrator, or missing CSRF token"),
                "404": error_response("No such category"),
            },
        },
    },
}
