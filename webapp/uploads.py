"""The upload routes of a user's own images and the route that serves every stored image.

``POST /api/upload/avatar`` and ``/banner`` set the caller's profile images; ``/uploads/{name}``
serves any stored upload (profiles' and channels' alike). Checking, re-encoding and storing
are ``webapp.images``' job, shared with the profile page, onboarding and the channel routes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .identity import require_user, set_current_user, user_json
from .images import (
    IMAGE_REQUEST_BODY,
    NAME_RE,
    image_upload_errors,
    read_image,
    set_profile_image,
)
from .keys import DECODE_GATE_KEY  # noqa: F401  (tests reach the gate by this name, here)
from .openapi import USER_ENVELOPE
from .stored import stored_file

CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png"}
UPLOAD_CACHE = "public, max-age=31536000, immutable"  # a name is never reused for other bytes


async def upload_profile_image(request: web.Request, kind: str) -> web.Response:
    user = await require_user(request)
    image = await read_image(request, kind)
    updated = await set_profile_image(request.app, user.id, image)
    set_current_user(request, updated)
    body = user_json(updated, private=True)
    return web.json_response(
        {"user": body, "url": body[f"{kind}_url"], "width": image.width, "height": image.height}
    )


async def upload_avatar(request: web.Request) -> web.Response:
    return await upload_profile_image(request, "avatar")


async def upload_banner(request: web.Request) -> web.Response:
    return await upload_profile_image(request, "banner")


async def serve_upload(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    # Only names of the shape we generate: no separators, no dots but the extension.
    if not NAME_RE.fullmatch(name):
        raise web.HTTPNotFound()
    ext = name.rsplit(".", 1)[1]
    headers = {
        "Content-Type": CONTENT_TYPES[ext],
        "Cache-Control": UPLOAD_CACHE,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    # On this disk, or (S3 mode) in the bucket: uploads are public, as their names are random.
    response = await stored_file(request, f"uploads/{name}", headers, public=True)
    if response is None:
        raise web.HTTPNotFound()
    return response


def setup(app: web.Application) -> None:
    app.router.add_post("/api/upload/avatar", upload_avatar)
    app.router.add_post("/api/upload/banner", upload_banner)
    app.router.add_get("/uploads/{name}", serve_upload)


def _upload_op(kind: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": f"Upload the {kind} (re-encoded to a bounded size; metadata dropped)",
            "tags": ["users"],
            "requestBody": IMAGE_REQUEST_BODY,
            "responses": {
                "200": {
                    "description": "Stored",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["user", "url", "width", "height"],
                                "properties": {
                                    **USER_ENVELOPE["properties"],
                                    "url": {"type": "string"},
                                    "width": {"type": "integer"},
                                    "height": {"type": "integer"},
                                },
                            }
                        }
                    },
                },
                **image_upload_errors(),
            },
        }
    }


OPENAPI_PATHS: dict[str, Any] = {
    "/api/upload/avatar": _upload_op("avatar"),
    "/api/upload/banner": _upload_op("banner"),
}
