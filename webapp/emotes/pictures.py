"""An emote's image: checked, scaled to 28, 56 and 112 px, stored, served.

The same rules as every upload (``webapp.images``): nothing is stored as sent; the header's
size is checked against ``uploads.max_pixels`` before any pixel is decoded, and the decode runs
in the shared decode gate (``DecodeGate.run``), so emote uploads share the bound on memory with
avatars and box art. Emotes add two bounds of their own for animations: ``emotes.max_frames``
and ``emotes.max_total_pixels`` (frames x width x height), checked before decoding too.

Each size is the picture fitted into a transparent square (its aspect kept, centred), so chat
can lay emotes out at a fixed size. A still image (PNG, WebP, a one-frame GIF) is stored as
PNG; an animated GIF or WebP is stored as an animated WebP with its frame durations and loop
count (WebP keeps full alpha, which GIF cannot). Files are named
``emote-{key}-{size}.{png|webp}`` under ``data_dir/emotes`` and, in S3 mode, also in the
bucket under ``emotes/`` (before the row naming them is committed), so any node serves them.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from mediaserver.settings import EmoteSettings, UploadSettings
from storage.errors import out_of_room
from storage.objects import ObjectStoreError

from ..errors import ApiError
from ..images import no_room_error
from ..keys import DECODE_GATE_KEY, OBJECTS_KEY, SETTINGS_KEY
from ..stored import stored_file

log = logging.getLogger(__name__)

SIZES = (28, 56, 112)
ACCEPTED = ("PNG", "GIF", "WEBP")
NAME_RE = re.compile(r"^emote-[0-9a-f]{32}-(28|56|112)\.(png|webp)$")
CONTENT_TYPES = {"png": "image/png", "webp": "image/webp"}
FILES_PREFIX = "/emotes/files/"
# WebP's decoder holds about four copies of the canvas (see webapp.images._DECODE_COST).
_DECODE_COST = {"WEBP": 4}
_DEFAULT_DURATION = 100  # ms, for frames that do not say


@dataclass(frozen=True)
class PreparedEmote:
    animated: bool
    files: dict[int, bytes]  # size -> encoded image

    @property
    def ext(self) -> str:
        return ext_of(self.animated)


def ext_of(animated: bool) -> str:
    return "webp" if animated else "png"


def file_name(key: str, size: int, animated: bool) -> str:
    return f"emote-{key}-{size}.{ext_of(animated)}"


def urls(key: str, animated: bool) -> dict[str, str]:
    return {str(size): FILES_PREFIX + file_name(key, size, animated) for size in SIZES}


def _bad(code: str, message: str, status: int = 400) -> ApiError:
    return ApiError(status, code, message)


def prepare_emote(data: bytes, limits: EmoteSettings, uploads: UploadSettings) -> PreparedEmote:
    """Decode, check and scale an emote upload. Blocking: run it in the decode gate.

    Raises ApiError: 400 not an image we take, damaged or too many frames; 413 file or
    pixels too large."""
    from PIL import Image, ImageSequence, UnidentifiedImageError  # noqa: PLC0415 - as images.py

    if not data:
        raise _bad("empty_file", "the uploaded file is empty")
    if len(data) > limits.max_bytes:
        raise _bad(
            "file_too_large",
            f"the file is {len(data)} bytes; the limit for an emote is {limits.max_bytes} bytes",
            413,
        )
    try:
        image = Image.open(io.BytesIO(data), formats=list(ACCEPTED))
    except Image.DecompressionBombError:
        raise _bad("image_too_large", "the image has too many pixels", 413) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise _bad(
            "not_an_image", "the file is not an image we accept for emotes (PNG, GIF or WebP)"
        ) from None
    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise _bad("damaged_image", "the image says it has no pixels")
        max_pixels = uploads.max_pixels // _DECODE_COST.get(image.format or "", 1)
        if width * height > max_pixels:
            raise _bad(
                "image_too_large",
                f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels",
                413,
            )
        frames = int(getattr(image, "n_frames", 1) or 1)
        if frames > limits.max_frames:
            raise _bad(
                "too_many_frames",
                f"the animation has {frames} frames; an emote may have {limits.max_frames}",
            )
        if frames * width * height > limits.max_total_pixels:
            raise _bad(
                "image_too_large",
                f"the animation is {frames} frames of {width}x{height}: over the limit of "
                f"{limits.max_total_pixels} pixels in all",
                413,
            )
        loop = int(image.info.get("loop", 0) or 0)
        scaled: dict[int, list[Any]] = {size: [] for size in SIZES}
        durations: list[int] = []
        try:
            for frame in ImageSequence.Iterator(image):
                rgba = frame.convert("RGBA")
                durations.append(int(frame.info.get("duration") or _DEFAULT_DURATION))
                for size in SIZES:
                    scaled[size].append(_fit(rgba, size))
                del rgba
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
            raise _bad(
                "damaged_image", f"the image could not be decoded (damaged or truncated): {exc}"
            ) from None
    animated = len(durations) > 1
    files: dict[int, bytes] = {}
    for size, pictures in scaled.items():
        out = io.BytesIO()
        if animated:
            pictures[0].save(
                out,
                format="WEBP",
                save_all=True,
                append_images=pictures[1:],
                duration=durations,
                loop=loop,
                quality=90,
                method=4,
            )
        else:
            pictures[0].save(out, format="PNG", optimize=True)
        files[size] = out.getvalue()
    return PreparedEmote(animated, files)


def _fit(rgba: Any, size: int) -> Any:
    """The picture scaled to fit a ``size`` square (aspect kept), centred on transparency."""
    from PIL import Image  # noqa: PLC0415 - loaded with the first upload

    w, h = rgba.size
    scale = min(size / w, size / h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Premultiplied while scaling, so transparent pixels' colours do not bleed into edges.
    small = rgba.convert("RGBa").resize(new, Image.Resampling.LANCZOS).convert("RGBA")
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    canvas.paste(small, ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas


async def prepare(app: web.Application, data: bytes) -> PreparedEmote:
    settings = app[SETTINGS_KEY]
    return await app[DECODE_GATE_KEY].run(prepare_emote, data, settings.emotes, settings.uploads)


def emotes_dir(app: web.Application) -> Path:
    return app[SETTINGS_KEY].data_dir / "emotes"


def _write_all(directory: Path, key: str, emote: PreparedEmote) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    try:
        for size, data in emote.files.items():
            name = file_name(key, size, emote.animated)
            tmp = directory / f".{name}.tmp"
            try:
                tmp.write_bytes(data)
                os.replace(tmp, directory / name)
            finally:
                tmp.unlink(missing_ok=True)
            names.append(name)
    except BaseException:
        for name in names:
            (directory / name).unlink(missing_ok=True)
        raise
    return names


async def store(app: web.Application, emote: PreparedEmote) -> str:
    """Write the sizes under a fresh key (and to the bucket in S3 mode); the key. A store that
    fails leaves nothing behind (503; a full disk 507)."""
    key = secrets.token_hex(16)
    directory = emotes_dir(app)
    try:
        names = await asyncio.to_thread(_write_all, directory, key, emote)
    except OSError as exc:
        if out_of_room(exc):
            raise no_room_error() from None
        raise
    objects = app[OBJECTS_KEY]
    if not objects.is_local:
        try:
            for name in names:
                await objects.put_file(f"emotes/{name}", directory / name)
        except ObjectStoreError as exc:
            log.error("emote not stored: %s", exc)
            remove(app, key, emote.animated)
            raise ApiError(
                503,
                "storage_unavailable",
                "the emote could not be stored right now; nothing was changed, try again later",
                headers={"Retry-After": "5"},
            ) from None
    return key


# Deletions from the bucket still running (kept so they are not collected half-way).
_REMOVALS: set[asyncio.Task[None]] = set()


def remove(app: web.Application, key: str, animated: bool) -> None:
    """Delete an emote's files here and (in the background) from the bucket."""
    names = [file_name(key, size, animated) for size in SIZES]
    for name in names:
        try:
            (emotes_dir(app) / name).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("emote file %s not removed: %s", name, exc)
    objects = app[OBJECTS_KEY]
    if not objects.is_local:
        task = asyncio.get_running_loop().create_task(_remove_stored(objects, names))
        _REMOVALS.add(task)
        task.add_done_callback(_REMOVALS.discard)


async def _remove_stored(objects: Any, names: list[str]) -> None:
    for name in names:
        try:
            await objects.delete(f"emotes/{name}")
        except ObjectStoreError as exc:  # counted by the store; the object is only orphaned
            log.warning("deleted emote's file not removed from the object store: %s", exc)


async def serve_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if not NAME_RE.fullmatch(name):
        raise web.HTTPNotFound()
    headers = {
        "Content-Type": CONTENT_TYPES[name.rsplit(".", 1)[1]],
        "Cache-Control": "public, max-age=31536000, immutable",  # a key is never reused
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    response = await stored_file(request, f"emotes/{name}", headers, public=True)
    if response is None:
        raise web.HTTPNotFound()
    return response
