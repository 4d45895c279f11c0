"""What the catalogue's API, admin page and browse pages share: a category as JSON, and the
admin's changes (each in its own transaction, box art through ``webapp.images``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from storage import categories
from storage.discovery_models import Category

from .. import images
from ..errors import ApiError
from ..identity import require_admin, require_user, upload_url
from ..keys import DB_KEY


def category_json(entry: Category) -> dict[str, Any]:
    return {
        "id": entry.id,
        "slug": entry.slug,
        "name": entry.name,
        "description": entry.description,
        "box_art_url": upload_url(entry.box_art_path),
        "retired": entry.retired_at is not None,
        "url": f"/categories/{entry.slug}",
    }


async def require_admin_user(request: web.Request) -> None:
    """Every write of the catalogue, checked on each request (a demoted admin stops at once)."""
    require_admin(await require_user(request))


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"no category {what[:80]!r}")


async def create_entry(app: web.Application, fields: Mapping[str, Any]) -> Category:
    async with app[DB_KEY].session() as session:
        entry = await categories.create_category(session, fields)
        await session.commit()
        return entry


async def update_entry(
    app: web.Application, category_id: int, changes: Mapping[str, Any]
) -> Category:
    async with app[DB_KEY].session() as session:
        entry = await categories.get_category(session, category_id)
        if entry is None:
            raise not_found(str(category_id))
        await categories.update_category(session, entry, changes)
        await session.commit()
        return entry


async def change_box_art(
    app: web.Application, category_id: int, image: images.PreparedImage | None
) -> Category:
    """Store ``image`` (None: remove the box art); the old file goes once the row is saved."""

    async def assign(name: str | None) -> tuple[str | None, Category]:
        async with app[DB_KEY].session() as session:
            entry = await categories.get_category(session, category_id)
            if entry is None:
                raise not_found(str(category_id))
            old = await categories.set_box_art(session, entry, name)
            await session.commit()
            return old, entry

    return await images.replace_image(app, image, assign)


CATEGORY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "slug", "name", "description", "box_art_url", "retired", "url"],
    "properties": {
        "id": {"type": "integer"},
        "slug": {"type": "string"},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "box_art_url": {"type": ["string", "null"]},
        "retired": {"type": "boolean"},
        "url": {"type": "string", "description": "The category's page"},
    },
}
