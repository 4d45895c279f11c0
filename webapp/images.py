"""Images people upload (avatars, banners): checked, re-encoded with Pillow, stored.

Nothing a client sends is stored as sent. The bytes must decode as a PNG, JPEG, GIF or WebP
whose header-declared size (for JPEG: the size it decodes at, reduced) is within
``uploads.max_pixels`` (checked before any pixel is decoded, so a small file that would inflate
into gigabytes is refused cheaply); the pixels are then decoded (a truncated file fails here),
shrunk, turned upright from the EXIF orientation, scaled into the configured box and encoded
afresh, which also drops EXIF/GPS metadata and anything appended to the file. Files get random
names under ``data_dir/uploads``; the client's filename is never used, and ``/uploads/{name}``
(``webapp.uploads``) serves only names of the shape we generate. In S3 mode (issue 15) each
new file also goes to the bucket under ``uploads/{name}`` before its name is committed (a
store that refuses it fails the upload with 503 and changes nothing), so any node serves it.

Memory: one decode holds at most ``max_pixels`` x 4 bytes and nothing else full-size, and
``DecodeGate`` bounds how many run at once (``uploads.max_concurrent_decodes``).

A failed upload raises ApiError and changes nothing: a row (a profile's or a channel's) and
the old file are only replaced after the new image has been fully prepared and written; see
``replace_image``, which the profile, onboarding and channel routes all go through. A full
disk is a 507, and leaves no partial file behind.

Shared by several areas (uploads, profile, onboarding, channels), so it sits under them:
``setup(app)`` makes the decode gate they all use.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import secrets
import warnings
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.web_request import FileField

from mediaserver.settings import UploadSettings
from storage import accounts
from storage.errors import out_of_room
from storage.objects import ObjectStoreError

from .errors import ApiError
from .keys import DB_KEY, DECODE_GATE_KEY, OBJECTS_KEY, SETTINGS_KEY
from .openapi import error_response
from .parsing import read_form

log = logging.getLogger(__name__)
# Pillow warns of images over 89 MP when it opens them; our own limits (see prepare_image)
# decide what is decoded, and a warning per large JPEG would only clutter the log.
warnings.filterwarnings(
    "ignore", message=r"Image size \(\d+ pixels\) exceeds limit", module="PIL.Image"
)

T = TypeVar("T")
# Sets a row's image column to the given name (None: no image), commits, and returns the name
# the column held before together with whatever the caller wants back (the updated row).
Assign = Callable[[str | None], Awaitable[tuple[str | None, T]]]

KINDS = ("avatar", "banner")
# A category's box art (the admin's catalogue): fitted into uploads.boxart_width x _height.
BOXART = "boxart"
ALL_KINDS = (*KINDS, BOXART)
ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
NAME_RE = re.compile(r"^(avatar|banner|boxart)-[0-9a-f]{32}\.(jpg|png)$")
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

    Memory is what this must keep small (one upload once took 0.8 GB): a JPEG is decoded at
    the smallest DCT scale that still leaves twice the output size (``draft``); other formats
    are decoded whole, so ``limits.max_pixels`` bounds the decoded frame, and everything after
    the decode (mode conversion, premultiplied alpha, shrinking by an integer factor) is done
    one band of rows at a time, so no second full-size copy is ever made. Orientation and the
    final high-quality resize are applied to the already small image.

    Raises ApiError (400 not an image / damaged, 413 too large) with a message for the user.
    """
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 - Pillow loads on first upload

    if kind not in ALL_KINDS:
        raise ValueError(f"unknown upload kind {kind!r}")
    if not data:
        raise ApiError(400, "empty_file", "the uploaded file is empty")
    if len(data) > limits.max_bytes:
        raise ApiError(
            413,
            "file_too_large",
            f"the file is {len(data)} bytes; the limit is {limits.max_bytes} bytes",
        )
    try:
        image = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
    except Image.DecompressionBombError:
        raise ApiError(
            413,
            "image_too_large",
            f"the image has too many pixels; the limit is {limits.max_pixels}",
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ApiError(
            400, "not_an_image", "the file is not an image we accept (PNG, JPEG, GIF or WebP)"
        ) from None
    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ApiError(400, "damaged_image", "the image says it has no pixels")
        try:
            if image.format == "JPEG":
                # JPEG's EXIF is read with the header, so the output box is known before decoding.
                target = _target(kind, width, height, _orientation(image), limits)
                image.draft(None, (2 * target[0], 2 * target[1]))
            decoded_w, decoded_h = image.size
            max_pixels = limits.max_pixels // _DECODE_COST.get(image.format or "", 1)
            if decoded_w * decoded_h > max_pixels:
                raise ApiError(
                    413, "image_too_large", _too_large(image.format, width, height, max_pixels)
                )
            image.load()
            orientation = _orientation(image)
            has_alpha = image.mode in ("RGBA", "LA", "PA") or (
                image.mode == "P" and "transparency" in image.info
            )
            target = _target(kind, decoded_w, decoded_h, orientation, limits)
            small = _shrink(image, _crop_box(kind, decoded_w, decoded_h), target, has_alpha)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
            raise ApiError(
                400,
                "damaged_image",
                f"the image could not be decoded (damaged or truncated): {exc}",
            ) from None
    if orientation in _TRANSPOSE:
        small = small.transpose(Image.Transpose[_TRANSPOSE[orientation]])
    if small.mode == "RGBa":
        small = small.convert("RGBA")  # back from premultiplied, at the small size
    if kind == "avatar":
        small = small.resize((limits.avatar_size, limits.avatar_size), Image.Resampling.LANCZOS)
    else:
        small.thumbnail(_box(kind, limits), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if has_alpha:
        small.save(out, format="PNG", optimize=True)
        ext = "png"
    else:
        small.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        ext = "jpg"
    return PreparedImage(kind, out.getvalue(), ext, small.width, small.height)


# EXIF orientation -> the PIL.Image.Transpose that makes the picture upright (as
# ImageOps.exif_transpose, which we cannot use: it works on the full-size image).
_TRANSPOSE = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}
# Rows converted and shrunk at once: a band of a 6000-pixel-wide image is ~6 MB.
_BAND_ROWS = 256
# Formats whose decoder holds more than the decoded image (4 bytes a pixel at most): how many
# times more. Pillow decodes WebP into libwebp's RGBA canvas, copies that to a bytes object,
# and then into the image: a 6000x6600 WebP took 545 MB, against ~100 MB for the same PNG.
_DECODE_COST = {"WEBP": 4}


def _orientation(image: Any) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except (ValueError, TypeError, SyntaxError, OSError):
        return 1  # unreadable EXIF: keep the picture as stored


def _too_large(fmt: str | None, width: int, height: int, max_pixels: int) -> str:
    if fmt == "JPEG":
        return (
            f"the image is {width}x{height} pixels: too large to decode even at a reduced "
            f"scale within the limit of {max_pixels} pixels"
        )
    return (
        f"the image is {width}x{height} pixels; the limit for {fmt} images is {max_pixels} "
        "pixels in all"
    )


def _target(
    kind: str, width: int, height: int, orientation: int, limits: UploadSettings
) -> tuple[int, int]:
    """The output size in the image's stored orientation (EXIF 5-8 swap width and height)."""
    turned = orientation in (5, 6, 7, 8)
    if kind == "avatar":
        return limits.avatar_size, limits.avatar_size
    box_w, box_h = _box(kind, limits)
    if turned:
        box_w, box_h = box_h, box_w
    scale = min(box_w / width, box_h / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _box(kind: str, limits: UploadSettings) -> tuple[int, int]:
    """The box a banner or box art is fitted into (its aspect ratio kept)."""
    if kind == BOXART:
        return limits.boxart_width, limits.boxart_height
    return limits.banner_width, limits.banner_height


def _crop_box(kind: str, width: int, height: int) -> tuple[int, int, int, int]:
    """The part of the stored image that is kept: a centred square for avatars (the same
    square whatever the EXIF orientation), everything for banners."""
    if kind != "avatar":
        return 0, 0, width, height
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def _shrink(
    image: Any, box: tuple[int, int, int, int], target: tuple[int, int], alpha: bool
) -> Any:
    """``box`` of ``image`` in RGB (RGBA, premultiplied RGBa once shrunk), shrunk by the
    largest integer factor that keeps it at least twice ``target``; one band of rows at a time,
    so only the decoded image is ever full size."""
    from PIL import Image  # noqa: PLC0415 - loaded with the first upload: see prepare_image

    left, top, right, bottom = box
    factor = max(1, min((right - left) // (2 * target[0]), (bottom - top) // (2 * target[1])))
    # Averaging colours is only right with alpha premultiplied; unshrunk pixels keep theirs.
    mode = ("RGBa" if factor > 1 else "RGBA") if alpha else "RGB"
    out = Image.new(mode, (-(-(right - left) // factor), -(-(bottom - top) // factor)))
    rows = factor * max(1, _BAND_ROWS // factor)
    for y in range(top, bottom, rows):
        band = image.crop((left, y, right, min(y + rows, bottom)))
        if band.mode != mode:
            band = band.convert("RGBA" if alpha else "RGB")
            if band.mode != mode:
                band = band.convert(mode)
        if factor > 1:
            band = band.reduce(factor)
        out.paste(band, (0, (y - top) // factor))
    return out


def _write(directory: Path, image: PreparedImage) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{image.kind}-{secrets.token_hex(16)}.{image.ext}"
    tmp = directory / f".{name}.tmp"
    try:
        tmp.write_bytes(image.data)
        os.replace(tmp, directory / name)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not also collect half-written files
        raise
    return name


def no_room_error() -> ApiError:
    return ApiError(
        507,
        "insufficient_storage",
        "the server has no room to store the image right now; nothing was changed, try again later",
    )


async def store_image(app: web.Application, image: PreparedImage) -> str:
    """Write a prepared image under a fresh random name (and to the bucket in S3 mode);
    return the name."""
    try:
        name = await asyncio.to_thread(_write, uploads_dir(app), image)
    except OSError as exc:
        if out_of_room(exc):
            raise no_room_error() from None
        raise
    store = app[OBJECTS_KEY]
    if not store.is_local:
        try:
            await store.put_file(f"uploads/{name}", uploads_dir(app) / name)
        except ObjectStoreError as exc:
            log.error("upload not stored: %s", exc)
            (uploads_dir(app) / name).unlink(missing_ok=True)
            raise ApiError(
                503,
                "storage_unavailable",
                "the image could not be stored right now; nothing was changed, try again later",
                headers={"Retry-After": "5"},
            ) from None
    return name


# Deletions from the bucket still running (kept so they are not collected half-way).
_REMOVALS: set[asyncio.Task[None]] = set()


def remove_upload(app: web.Application, name: str | None) -> None:
    if name and NAME_RE.fullmatch(name):
        try:
            (uploads_dir(app) / name).unlink()
        except FileNotFoundError:
            pass
        store = app[OBJECTS_KEY]
        if not store.is_local:  # the bucket's copy goes too, in the background
            task = asyncio.get_running_loop().create_task(_remove_stored(store, name))
            _REMOVALS.add(task)
            task.add_done_callback(_REMOVALS.discard)


async def _remove_stored(store: Any, name: str) -> None:
    try:
        await store.delete(f"uploads/{name}")
    except ObjectStoreError as exc:  # counted by the store; the object is only orphaned
        log.warning("replaced upload not deleted from the object store: %s", exc)


async def read_upload(request: web.Request, field_name: str = "file") -> bytes | None:
    """The bytes of a multipart file field (None when the form has no file there).

    The body was already bounded by the application's client_max_size; the exact per-file
    limit is checked by ``prepare_image``.
    """
    if request.content_type != "multipart/form-data":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the image as multipart/form-data in a field named {field_name!r}",
        )
    try:
        form = await read_form(request)  # parts over 1 MiB are spooled to a temporary file
    except OSError as exc:
        if out_of_room(exc):
            raise no_room_error() from None
        raise
    value = form.get(field_name)
    if value is None:
        return None
    if not isinstance(value, FileField):
        raise ApiError(400, "invalid", f"the field {field_name!r} must be a file")
    limit = request.app[SETTINGS_KEY].uploads.max_bytes
    data = value.file.read(limit + 1)
    return data


class DecodeGate:
    """At most ``uploads.max_concurrent_decodes`` images are decoded at once, each in one of
    that many threads of our own, and at most ``uploads.max_waiting_decodes`` wait for a turn;
    past that an upload is refused with 503 at once.

    Why: a decode holds up to ``max_pixels`` x 4 bytes, so the number of decodes running is
    what bounds upload memory (three at once once took 1.6 GB). Our own threads, rather than
    the shared default pool, also keep the memory freed by one decode for the next one (the
    allocator keeps a free list per thread) instead of spreading it over every thread.
    """

    def __init__(self, limits: UploadSettings) -> None:
        self.limits = limits
        self._pool = ThreadPoolExecutor(
            limits.max_concurrent_decodes, thread_name_prefix="aethex-image"
        )
        self._queued = 0

    @property
    def queued(self) -> int:
        """Work accepted and not finished: running plus waiting."""
        return self._queued

    async def prepare(self, data: bytes, kind: str) -> PreparedImage:
        return await self.run(prepare_image, data, kind, self.limits)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` in a decode thread once one is free (ApiError 503 if too many wait)."""
        limit = self.limits.max_concurrent_decodes + self.limits.max_waiting_decodes
        if self._queued >= limit:
            raise ApiError(
                503,
                "busy",
                "too many images are being processed right now; try again in a few seconds",
                headers={"Retry-After": "5"},
            )
        self._queued += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)
        finally:
            self._queued -= 1

    async def close(self, _app: web.Application | None = None) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def prepare_upload(app: web.Application, data: bytes, kind: str) -> PreparedImage:
    return await app[DECODE_GATE_KEY].prepare(data, kind)


async def read_image(request: web.Request, kind: str) -> PreparedImage:
    """The request's ``file`` field, checked and re-encoded as a ``kind`` image (or ApiError)."""
    data = await read_upload(request)
    if data is None:
        raise ApiError(400, "missing_field", "the form field 'file' (the image) is required")
    return await prepare_upload(request.app, data, kind)


async def replace_image(app: web.Application, image: PreparedImage | None, assign: Assign[T]) -> T:
    """Point a row at ``image`` (None: at no image) so that files and rows never disagree.

    The new file is written first, then ``assign`` commits its name. If ``assign`` raises (the
    row is gone, the caller may not change it, the database fails) the new file is removed
    and nothing else has changed. Only after the commit is the replaced file removed, so a
    committed row never names a missing file.
    """
    name = await store_image(app, image) if image is not None else None
    try:
        old, result = await assign(name)
    except BaseException as exc:
        remove_upload(app, name)
        if out_of_room(exc):
            raise no_room_error() from None
        raise
    if old != name:
        remove_upload(app, old)
    return result


async def set_profile_image(app: web.Application, user_id: int, image: PreparedImage) -> Any:
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


def setup(app: web.Application) -> None:
    """The decode gate every image upload goes through (profile, onboarding, channels)."""
    gate = app[DECODE_GATE_KEY] = DecodeGate(app[SETTINGS_KEY].uploads)
    app.on_cleanup.append(gate.close)


# The multipart body of every image upload (profile and channel routes alike).
IMAGE_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "PNG, JPEG, GIF or WebP",
                    }
                },
            }
        }
    },
}


def image_upload_errors() -> dict[str, Any]:
    """The error answers of an image upload (nothing is changed by any of them)."""
    return {
        "400": error_response("Not an image, damaged, or no file"),
        "401": error_response("Not logged in"),
        "403": error_response("Missing CSRF token, or not allowed to change this"),
        "413": error_response("File or image dimensions too large"),
        "415": error_response("Not multipart/form-data"),
        "503": error_response("Too many uploads being processed (see Retry-After)"),
        "507": error_response("No room on the server's disk to store it"),
    }
