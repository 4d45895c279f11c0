"""The user's own profile: ``/dashboard/profile`` and its JSON API (profile, API tokens).

The page is plain forms (profile fields, avatar, banner, tokens); the API is
``PATCH /api/auth/profile`` and ``GET/POST /api/auth/tokens``, ``DELETE /api/auth/tokens/{id}``.
A new API token is shown exactly once, in the response that creates it: only its hash is kept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from storage import accounts
from storage.errors import ConflictError, NotFoundError, ValidationError
from storage.models import ApiToken, User

from . import images
from .errors import ApiError
from .identity import (
    account_changed,
    require_page_user,
    require_user,
    set_current_user,
    user_json,
)
from .keys import DB_KEY, SETTINGS_KEY
from .openapi import USER_ENVELOPE, error_response, json_body, json_response
from .parsing import field, parse_id, read_form, read_json
from .render import form_text, message_of, redirect, render


def _now() -> datetime:
    return datetime.now(UTC)


def token_json(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": token.created_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


async def save_profile(app: web.Application, user: User, changes: dict[str, Any]) -> User:
    async with app[DB_KEY].session() as session:
        row = await accounts.get_user_with_profile(session, user.id)
        assert row is not None
        await accounts.update_profile(session, row, changes)
        await session.commit()
        row = await accounts.get_user_with_profile(session, user.id)
    assert row is not None
    return row


async def create_token(app: web.Application, user: User, name: object) -> tuple[ApiToken, str]:
    if not isinstance(name, str):
        raise ApiError(400, "invalid", "the field 'name' must be a string")
    async with app[DB_KEY].session() as session:
        row, token = await accounts.create_user_api_token(
            session, user.id, name, _now(), app[SETTINGS_KEY].auth.max_api_tokens
        )
        await session.commit()
    return row, token


async def list_tokens(app: web.Application, user: User) -> list[ApiToken]:
    async with app[DB_KEY].session() as session:
        return await accounts.list_api_tokens(session, user.id)


async def revoke_token(app: web.Application, user: User, raw_id: str) -> ApiToken:
    token_id = parse_id(raw_id)
    if token_id is None:
        raise ApiError(404, "not_found", f"no API token with id {raw_id[:40]!r}")
    async with app[DB_KEY].session() as session:
        row = await accounts.revoke_user_api_token(session, user.id, token_id, _now())
        await session.commit()
    account_changed(app, user.id)  # a chat socket opened with this token stops at once
    return row


# -- JSON API --------------------------------------------------------------------------------


async def patch_profile_api(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    if not body:
        raise ApiError(400, "missing_field", "send at least one profile field to change")
    updated = await save_profile(request.app, user, body)
    set_current_user(request, updated)
    return web.json_response({"user": user_json(updated, private=True)})


async def list_tokens_api(request: web.Request) -> web.Response:
    user = await require_user(request)
    tokens = await list_tokens(request.app, user)
    return web.json_response(
        {"tokens": [token_json(t) for t in tokens]}, headers={"Cache-Control": "no-store"}
    )


async def create_token_api(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    row, token = await create_token(request.app, user, field(body, "name"))
    return web.json_response(
        {"token": token, "api_token": token_json(row)},
        status=201,
        headers={"Cache-Control": "no-store"},
    )


async def revoke_token_api(request: web.Request) -> web.Response:
    user = await require_user(request)
    row = await revoke_token(request.app, user, request.match_info["token_id"])
    return web.json_response({"api_token": token_json(row)})


# -- page ------------------------------------------------------------------------------------

NOTICES = {
    "saved": "Profile saved.",
    "avatar": "Avatar updated.",
    "banner": "Banner updated.",
    "revoked": "Token revoked.",
    "welcome": "Welcome! Your profile is set up.",
}


async def _profile_page(
    request: web.Request,
    user: User,
    *,
    status: int = 200,
    error: str | None = None,
    new_token: str | None = None,
    form: dict[str, Any] | None = None,
) -> web.Response:
    tokens = await list_tokens(request.app, user)
    notice = next((text for key, text in NOTICES.items() if key in request.query), None)
    limits = request.app[SETTINGS_KEY].uploads
    return render(
        request,
        "profile.html",
        {
            "user": user,
            "profile": user.profile,
            "tokens": tokens,
            "error": error,
            "notice": None if error else notice,
            "new_token": new_token,
            "form": form or {},
            "social_keys": accounts.SOCIAL_KEYS,
            "themes": accounts.THEMES,
            "max_upload_mb": round(limits.max_bytes / (1 << 20), 1),
        },
        status=status,
    )


async def profile_page(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    return await _profile_page(request, user)


async def profile_submit(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    form = await read_form(request)
    changes: dict[str, Any] = {
        "display_name": form_text(form, "display_name"),
        "bio": form_text(form, "bio"),
        "theme": form_text(form, "theme"),
        "language": form_text(form, "language").strip(),
        "social_links": {
            key: form_text(form, f"social_{key}").strip() for key in accounts.SOCIAL_KEYS
        },
    }
    try:
        await save_profile(request.app, user, changes)
    except (ValidationError, ApiError) as exc:
        status, message = message_of(exc)
        return await _profile_page(request, user, status=status, error=message, form=changes)
    return redirect("/dashboard/profile?saved=1")


async def _image_submit(request: web.Request, kind: str) -> web.Response:
    user = await require_page_user(request)
    try:
        data = await images.read_upload(request, "file")
        if not data:
            raise ApiError(400, "missing_field", "choose an image file first")
        image = await images.prepare_upload(request.app, data, kind)
        await images.set_profile_image(request.app, user.id, image)
    except ApiError as exc:
        return await _profile_page(request, user, status=exc.status, error=exc.message)
    return redirect(f"/dashboard/profile?{kind}=1")


async def avatar_submit(request: web.Request) -> web.Response:
    return await _image_submit(request, "avatar")


async def banner_submit(request: web.Request) -> web.Response:
    return await _image_submit(request, "banner")


async def token_submit(request: web.Request) -> web.Response:
    """Creates a token and shows it in this very response (no redirect: it is shown once)."""
    user = await require_page_user(request)
    form = await read_form(request)
    try:
        _, token = await create_token(request.app, user, form_text(form, "name"))
    except (ValidationError, ConflictError, ApiError) as exc:
        status, message = message_of(exc)
        return await _profile_page(request, user, status=status, error=message)
    response = await _profile_page(request, user, new_token=token)
    response.headers["Cache-Control"] = "no-store"
    return response


async def token_revoke_submit(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    try:
        await revoke_token(request.app, user, request.match_info["token_id"])
    except (NotFoundError, ApiError) as exc:
        status, message = message_of(exc)
        return await _profile_page(request, user, status=status, error=message)
    return redirect("/dashboard/profile?revoked=1")


def setup(app: web.Application) -> None:
    app.router.add_patch("/api/auth/profile", patch_profile_api)
    app.router.add_get("/api/auth/tokens", list_tokens_api)
    app.router.add_post("/api/auth/tokens", create_token_api)
    app.router.add_delete("/api/auth/tokens/{token_id}", revoke_token_api)
    app.router.add_get("/dashboard/profile", profile_page)
    app.router.add_post("/dashboard/profile", profile_submit)
    app.router.add_post("/dashboard/profile/avatar", avatar_submit)
    app.router.add_post("/dashboard/profile/banner", banner_submit)
    app.router.add_post("/dashboard/profile/tokens", token_submit)
    app.router.add_post("/dashboard/profile/tokens/{token_id}/revoke", token_revoke_submit)


# -- OpenAPI ---------------------------------------------------------------------------------

TOKEN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "name", "prefix", "created_at"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "prefix": {"type": "string", "description": "First characters, to tell tokens apart"},
        "created_at": {"type": "string", "format": "date-time"},
        "last_used_at": {"type": ["string", "null"], "format": "date-time"},
        "revoked_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
_UNAUTH = error_response("Not logged in")
_CSRF = error_response("Cookie-authenticated call without a valid X-CSRF-Token")

OPENAPI_PATHS: dict[str, Any] = {
    "/api/auth/profile": {
        "patch": {
            "summary": "Change your profile (only the fields sent)",
            "tags": ["users"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "minProperties": 1,
                    "properties": {
                        "display_name": {"type": "string", "maxLength": accounts.DISPLAY_NAME_MAX},
                        "bio": {"type": "string", "maxLength": accounts.BIO_MAX},
                        "theme": {"type": "string", "enum": list(accounts.THEMES)},
                        "language": {"type": "string", "example": "en"},
                        "social_links": {
                            "type": "object",
                            "description": "network -> http(s) URL",
                            "properties": {
                                k: {"type": "string", "format": "uri"} for k in accounts.SOCIAL_KEYS
                            },
                            "additionalProperties": False,
                        },
                    },
                    "additionalProperties": False,
                }
            ),
            "responses": {
                "200": json_response("Saved", USER_ENVELOPE),
                "400": error_response("Invalid or unknown field (nothing is changed)"),
                "401": _UNAUTH,
                "403": _CSRF,
            },
        }
    },
    "/api/auth/tokens": {
        "get": {
            "summary": "Your API tokens (never the secret)",
            "tags": ["auth"],
            "responses": {
                "200": json_response(
                    "Tokens",
                    {
                        "type": "object",
                        "required": ["tokens"],
                        "properties": {"tokens": {"type": "array", "items": TOKEN_SCHEMA}},
                    },
                ),
                "401": _UNAUTH,
            },
        },
        "post": {
            "summary": "Create an API token; the secret is in this response only",
            "tags": ["auth"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string", "maxLength": 64}},
                }
            ),
            "responses": {
                "201": json_response(
                    "Created",
                    {
                        "type": "object",
                        "required": ["token", "api_token"],
                        "properties": {
                            "token": {
                                "type": "string",
                                "description": "Use as Authorization: Bearer",
                            },
                            "api_token": TOKEN_SCHEMA,
                        },
                    },
                ),
                "400": error_response("Missing or invalid name"),
                "401": _UNAUTH,
                "403": _CSRF,
                "409": error_response("Too many tokens"),
            },
        },
    },
    "/api/auth/tokens/{token_id}": {
        "delete": {
            "summary": "Revoke one of your API tokens",
            "tags": ["auth"],
            "parameters": [
                {"name": "token_id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "responses": {
                "200": json_response(
                    "Revoked",
                    {
                        "type": "object",
                        "required": ["api_token"],
                        "properties": {"api_token": TOKEN_SCHEMA},
                    },
                ),
                "401": _UNAUTH,
                "403": _CSRF,
                "404": error_response("No such token of yours"),
            },
        }
    },
}
