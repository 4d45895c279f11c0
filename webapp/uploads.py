"""Image uploads (avatars, banners): checked, re-encoded with Pillow, stored, served.

Nothing a client sends is stored as sent. The bytes must decode as a PNG, JPEG, GIF or WebP
whose header-declared size is within ``uploads.max_pixels`` (checked before any pixel is
decoded, so a small file that would inflate into gigabytes is refused cheaply); the pixels are
then decoded fully (a truncated file fails here), turned upright from the EXIF orientation,
scaled into the configured box and encoded afresh, which also drops EXIF/GPS metadata and
anything appended to the file. Files get random names under ``data_dir/uploads``; the client's
filename is never used, and ``/uploads/{name}`` serves only names of the shape we generate.

A failed upload raises ApiError and changes nothing: a row (a profile's or a channel's) and
the old file are only replaced after the new image has been fully prepared and written; see
``replace_image``, which both the profile and the channel routes go through.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.web_request import FileField

from mediaserver.settings import UploadSettings
from storage import accounts

from .app import DB_KEY, SETTINGS_KEY
from .errors import ApiError
from .parsing import read_form
from .identity import require_user, set_current_user, user_json

log = logging.getLogger(__name__)

T = TypeVar("T")
# Sets a row's image column to the given name (None: no image), commits, and returns the name
# the column held before together with whatever the caller wants back (the updated row).
Assign = Callable[[str | None], Awaitable[tuple[str | None, T]]]

KINDS = ("avatar", "banner")
ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
NAME_RE = re.compile(r"^(avatar|banner)-[0-9a-f]{32}\.(jpg|png)$")
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png"}
UPLOAD_CACHE = "public, max-age=31536000, immutable"  # a name is never reused for other bytes
JPEG_QUALITY = 88


@dataclass(frozen=True)
class PreparedImage:
    kind: str
    data: bytes
    ext: str
    width: int
    height: int


def uploads_dir(app: web.Application) -> Path:
    return app[SETTINGS_KEY].data_dir / "uploads"


def prepare_image(data: bytes, kind: str, limits: UploadSettings) -> PreparedImage:
    """Decode, check, resize and re-encode an upload. Blocking: run it in a thread.

    Raises ApiError (400 not an image / damaged, 413 too large) with a message for the user.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if kind not in KINDS:
        raise ValueError(f"unknown upload kind {kind!r}")
    if not data:
        raise ApiError(400, "empty_file", "the uploaded file is empty")
    if len(data) > limits.max_bytes:
        raise ApiError(413, "file_too_large",
                       f"the file is {len(data)} bytes; the limit is {limits.max_bytes} bytes")
    try:
        image = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
    except Image.DecompressionBombError:
        raise ApiError(413, "image_too_large",
                       f"the image has too many pixels; the limit is {limits.max_pixels}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ApiError(400, "not_an_image",
                       "the file is not an image we accept (PNG, JPEG, GIF or WebP)") from None
    with image:
        width, height = image.size
        if width <= 0 or height <= 0 or width * height > limits.max_pixels:
            raise ApiError(413, "image_too_large",
                           f"the image is {width}x{height} pixels; the limit is "
                           f"{limits.max_pixels} pixels in all")
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
            has_alpha = image.mode in ("RGBA", "LA", "PA") or (
                image.mode == "P" and "transparency" in image.info)
            image = image.convert("RGBA" if has_alpha else "RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ApiError(400, "damaged_image",
                           f"the image could not be decoded (damaged or truncated): {exc}") from None
        if kind == "avatar":
            box = (limits.avatar_size, limits.avatar_size)
            image = ImageOps.fit(image, box, method=Image.Resampling.LANCZOS)
        else:
            image.thumbnail((limits.banner_width, limits.banner_height),
                            Image.Resampling.LANCZOS)
        out = io.BytesIO()
        if has_alpha:
            image.save(out, format="PNG", optimize=True)
            ext = "png"
        else:
            image.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
            ext = "jpg"
        return PreparedImage(kind, out.getvalue(), ext, image.width, image.height)


def _write(directory: Path, image: PreparedImage) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{image.kind}-{secrets.token_hex(16)}.{image.ext}"
    tmp = directory / f".{name}.tmp"
    tmp.write_bytes(image.data)
    os.replace(tmp, directory / name)
    return name


async def store_image(app: web.Application, image: PreparedImage) -> str:
    """Write a prepared image under a fresh random name; return the name."""
    return await asyncio.to_thread(_write, uploads_dir(app), image)


def remove_upload(app: web.Application, name: str | None) -> None:
    if name and NAME_RE.fullmatch(name):
        try:
            (uploads_dir(app) / name).unlink()
        except FileNotFoundError:
            pass


async def read_upload(request: web.Request, field_name: str = "file") -> bytes | None:
    """The bytes of a multipart file field (None when the form has no file there).

    The body was already bounded by the application's client_max_size; the exact per-file
    limit is checked by ``prepare_image``.
    """
    if request.content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type",
                       f"send the image as multipart/form-data in a field named {field_name!r}")
    form = await read_form(request)
    value = form.get(field_name)
    if value is None:
        return None
    if not isinstance(value, FileField):
        raise ApiError(400, "invalid", f"the field {field_name!r} must be a file")
    limit = request.app[SETTINGS_KEY].uploads.max_bytes
    data = value.file.read(limit + 1)
    return data


async def prepare_upload(app: web.Application, data: bytes, kind: str) -> PreparedImage:
    return await asyncio.to_thread(prepare_image, data, kind, app[SETTINGS_KEY].uploads)


async def read_image(request: web.Request, kind: str) -> PreparedImage:
    """The request's ``file`` field, checked and re-encoded as a ``kind`` image (or ApiError)."""
    data = await read_upload(request)
    if data is None:
        raise ApiError(400, "missing_field", "the form field 'file' (the image) is required")
    return await prepare_upload(request.app, data, kind)


async def replace_image(app: web.Application, image: PreparedImage | None,
                        assign: Assign[T]) -> T:
    """Point a row at ``image`` (None: at no image) so that files and rows never disagree.

    The new file is written first, then ``assign`` commits its name. If ``assign`` raises (the
    row is gone, the caller may not change it, the database fails) the new file is removed
    and nothing else has changed. Only after the commit is the replaced file removed, so a
    committed row never names a missing file.
    """
    name = await store_image(app, image) if image is not None else None
    try:
        old, result = await assign(name)
    except BaseException:
        remove_upload(app, name)
        raise
    if old != name:
        remove_upload(app, old)
    return result


async def set_profile_image(app: web.Application, user_id: int,
                            image: PreparedImage) -> Any:
    """Store ``image`` as the user's avatar or banner; the old file is removed afterwards."""
    column = f"{image.kind}_path"

    async def assign(name: str | None) -> tuple[str | None, Any]:
        async with app[DB_KEY].session() as session:
            user = await accounts.get_user_with_profile(session, user_id)
            if user is None:
                raise ApiError(404, "not_found", "the user no longer exists")
            profile = await accounts.ensure_profile(session, user)
            old = getattr(profile, column)
            setattr(profile, column, name)
            await session.commit()
            return old, await accounts.get_user_with_profile(session, user_id)

    return await replace_image(app, image, assign)


async def upload_profile_image(request: web.Request, kind: str) -> web.Response:
    user = await require_user(request)
    image = await read_image(request, kind)
    updated = await set_profile_image(request.app, user.id, image)
    set_current_user(request, updated)
    body = user_json(updated, private=True)
    return web.json_response({"user": body, "url": body[f"{kind}_url"],
                              "width": image.width, "height": image.height})


async def upload_avatar(request: web.Request) -> web.Response:
    return await upload_profile_image(request, "avatar")


async def upload_banner(request: web.Request) -> web.Response:
    return await upload_profile_image(request, "banner")


async def serve_upload(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    # Only names of the shape we generate: no separators, no dots but the extension.
    if not NAME_RE.fullmatch(name):
        raise web.HTTPNotFound()
    path = uploads_dir(request.app) / name
    if not path.is_file():
        raise web.HTTPNotFound()
    ext = name.rsplit(".", 1)[1]
    return web.FileResponse(path, headers={
        "Content-Type": CONTENT_TYPES[ext], "Cache-Control": UPLOAD_CACHE,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox"})


def setup(app: web.Application) -> None:
    app.router.add_post("/api/upload/avatar", upload_avatar)
    app.router.add_post("/api/upload/banner", upload_banner)
    app.router.add_get("/uploads/{name}", serve_upload)


# The multipart body of every image upload (profile and channel routes alike).
IMAGE_REQUEST_BODY: dict[str, Any] = {
    "required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "PNG, JPEG, GIF or WebP"}}}}}}


def image_upload_errors() -> dict[str, Any]:
    """The error answers of an image upload (nothing is changed by any of them)."""
    from .auth.api import error_response

    return {"400": error_response("Not an image, damaged, or no file"),
            "401": error_response("Not logged in"),
            "403": error_response("Missing CSRF token, or not allowed to change this"),
            "413": error_response("File or image dimensions too large"),
            "415": error_response("Not multipart/form-data")}


def _upload_op(kind: str) -> dict[str, Any]:
    from .auth.api import USER_ENVELOPE

    return {"post": {
        "summary": f"Upload the {kind} (re-encoded to a bounded size; metadata dropped)",
        "tags": ["users"],
        "requestBody": IMAGE_REQUEST_BODY,
        "responses": {
            "200": {"description": "Stored", "content": {"application/json": {"schema": {
                "type": "object", "required": ["user", "url", "width", "height"],
                "properties": {**USER_ENVELOPE["properties"], "url": {"type": "string"},
                               "width": {"type": "integer"}, "height": {"type": "integer"}}}}}},
            **image_upload_errors()}}}


OPENAPI_PATHS: dict[str, Any] = {
    "/api/upload/avatar": _upload_op("avatar"),
    "/api/upload/banner": _upload_op("banner"),
}
