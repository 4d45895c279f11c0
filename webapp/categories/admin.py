"""``/dashboard/admin/categories``: the catalogue page of admins (checked on every request).

Plain forms with the page's CSRF token, sent as multipart so the box art can come with a
create or an edit: add an entry, edit its name, slug and description, upload or remove its
box art, retire it or bring it back. A refused change shows the page again with the message
(and what was typed); every change is the same storage call the JSON API makes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from storage import categories

from .. import images
from ..errors import ApiError
from ..identity import require_admin, require_page_user
from ..keys import DB_KEY, SETTINGS_KEY
from ..parsing import path_id, read_form
from ..render import form_text, message_of, redirect, render
from .common import category_json, change_box_art, create_entry, update_entry

PAGE = "/dashboard/admin/categories"
NOTICES = {
    "created": "Category added.",
    "saved": "Category saved.",
    "retired": "Category retired: hidden from pickers and /categories; channels keep it.",
    "restored": "Category active again.",
    "art": "Box art removed.",
}


async def _require_admin_page(request: web.Request) -> None:
    require_admin(await require_page_user(request))


async def _page(
    request: web.Request,
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, Any] | None = None,
    failed_id: int | None = None,
) -> web.Response:
    async with request.app[DB_KEY].session() as session:
        entries = await categories.list_categories(session, include_retired=True)
    limits = request.app[SETTINGS_KEY].uploads
    notice = next((text for key, text in NOTICES.items() if key in request.query), None)
    response = render(
        request,
        "categories/admin.html",
        {
            "entries": [category_json(e) for e in entries],
            "error": error,
            "notice": None if error else notice,
            "form": form or {},
            "failed_id": failed_id,
            "max_upload_mb": round(limits.max_bytes / (1 << 20), 1),
            "boxart_box": f"{limits.boxart_width}×{limits.boxart_height}",
            "name_max": categories.NAME_MAX,
            "slug_max": categories.SLUG_MAX,
            "description_max": categories.DESCRIPTION_MAX,
        },
        status=status,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def _image_of(request: web.Request, form: Any) -> images.PreparedImage | None:
    """The box art the form carries, checked and re-encoded; None when no file was chosen."""
    value = form.get("file")
    if not isinstance(value, FileField):
        return None
    data = value.file.read(request.app[SETTINGS_KEY].uploads.max_bytes + 1)
    if not data:
        return None
    return await images.prepare_upload(request.app, data, images.BOXART)


def _fields(form: Any) -> dict[str, Any]:
    return {
        "name": form_text(form, "name"),
        "slug": form_text(form, "slug").strip(),
        "description": form_text(form, "description"),
    }


async def admin_page(request: web.Request) -> web.Response:
    await _require_admin_page(request)
    return await _page(request)


async def create_submit(request: web.Request) -> web.Response:
    await _require_admin_page(request)
    form = await read_form(request)
    fields = _fields(form)
    try:
        image = await _image_of(request, form)  # refused before anything is written
        entry = await create_entry(
            request.app, {k: v for k, v in fields.items() if k != "slug" or v}
        )
        if image is not None:
            await change_box_art(request.app, entry.id, image)
    except Exception as exc:  # message_of re-raises what is not the user's
        status, message = message_of(exc)
        return await _page(request, status=status, error=message, form=fields)
    return redirect(f"{PAGE}?created=1#category-{entry.slug}")


async def edit_submit(request: web.Request) -> web.Response:
    await _require_admin_page(request)
    category_id = path_id(request, "category_id", "category")
    form = await read_form(request)
    action = form_text(form, "action") or "save"
    try:
        if action == "save":
            fields = {k: v for k, v in _fields(form).items() if k != "slug" or v}
            image = await _image_of(request, form)
            entry = await update_entry(request.app, category_id, fields)
            if image is not None:
                entry = await change_box_art(request.app, category_id, image)
            notice = "saved"
        elif action in ("retire", "restore"):
            entry = await update_entry(request.app, category_id, {"retired": action == "retire"})
            notice = "retired" if action == "retire" else "restored"
        elif action == "remove-art":
            entry = await change_box_art(request.app, category_id, None)
            notice = "art"
        else:
            raise ApiError(400, "invalid", f"unknown action {action[:40]!r}")
    except Exception as exc:  # message_of re-raises what is not the user's
        status, message = message_of(exc)
        return await _page(request, status=status, error=message, failed_id=category_id)
    return redirect(f"{PAGE}?{notice}=1#category-{entry.slug}")


def setup(app: web.Application) -> None:
    app.router.add_get(PAGE, admin_page)
    app.router.add_post(PAGE, create_submit)
    app.router.add_post(PAGE + "/{category_id}", edit_submit)
