"""The category catalogue: what admins create, rename and retire, and what a channel (and each
of its broadcasts) picks its category from.

``Channel.category`` and ``Stream.category`` (the free-text columns of before the catalogue)
stay as a display copy of the entry's name, written only here: together with ``category_id``
when a channel or stream picks its category, and for every channel and stream of an entry when
an admin renames it. Code that only shows ``channel.category`` therefore keeps working.

A choice is a catalogue slug or name, either without regard to case; null or "" means no
category. An unknown entry is refused, and so is a retired one, unless the row already had
it (saving a form that still shows a since-retired category must not fail).

Like ``storage.queries``: every function takes an ``AsyncSession``, flushes, never commits.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.discovery_models import Category
from storage.errors import ConflictError, ValidationError
from storage.models import Channel, Stream, utcnow

NAME_MAX = 64
SLUG_MAX = 64
DESCRIPTION_MAX = 2000
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
CATEGORY_FIELDS = ("name", "slug", "description", "retired")


def slug_for(name: str) -> str:
    """The slug a new entry gets when none is given: its name in lower case, runs of other
    characters turned into one "-" (as migration 0006 named the starter set), accents dropped
    first ("Émission" -> "emission")."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")[:SLUG_MAX] or "category"


def _text(value: Any, what: str, max_len: int, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string")
    cleaned = value.strip()
    if not cleaned and not allow_empty:
        raise ValidationError(f"{what} must not be empty")
    if len(cleaned) > max_len:
        raise ValidationError(f"{what} is too long ({len(cleaned)} characters, at most {max_len})")
    if any(ord(c) < 32 and c not in "\n\t" for c in cleaned) or (
        "\n" in cleaned and what != "description"
    ):
        raise ValidationError(f"{what} must not contain control characters")
    return cleaned


def clean_slug(value: Any) -> str:
    slug = _text(value, "category slug", SLUG_MAX)
    if not SLUG_RE.fullmatch(slug):
        raise ValidationError(
            f"invalid category slug {slug[:80]!r}: use lowercase letters a-z, digits and -, "
            f"starting with a letter or digit, at most {SLUG_MAX} characters"
        )
    return slug


def clean_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """A validated partial change of an entry; unknown fields are an error, not ignored."""
    unknown = sorted(set(changes) - set(CATEGORY_FIELDS))
    if unknown:
        raise ValidationError(f"unknown category field(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    if "name" in changes:
        out["name"] = _text(changes["name"], "category name", NAME_MAX)
    if "slug" in changes:
        out["slug"] = clean_slug(changes["slug"])
    if "description" in changes:
        value = changes["description"]
        out["description"] = (
            "" if value is None else _text(value, "description", DESCRIPTION_MAX, allow_empty=True)
        )
    if "retired" in changes:
        if not isinstance(changes["retired"], bool):
            raise ValidationError("retired must be true or false")
        out["retired"] = changes["retired"]
    return out


# -- reading ---------------------------------------------------------------------------------


async def list_categories(
    session: AsyncSession, *, include_retired: bool = False, limit: int | None = None
) -> list[Category]:
    """Entries by name (case-insensitively); active ones only unless ``include_retired``."""
    q = select(Category)
    if not include_retired:
        q = q.where(Category.retired_at.is_(None))
    q = q.order_by(func.lower(Category.name), Category.id)
    if limit is not None:
        q = q.limit(limit)
    return list((await session.scalars(q)).all())


async def get_category(session: AsyncSession, category_id: int) -> Category | None:
    return await session.get(Category, category_id)


async def get_by_slug(session: AsyncSession, slug: str) -> Category | None:
    """The entry (retired too) this exact slug names; None for one that could not be a slug."""
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
        return None
    return (await session.scalars(_by_slug(), {"slug": slug})).one_or_none()


@functools.cache
def _by_slug() -> Select[Category]:
    """Built once: statements are dearer to build than this one is to run."""
    return select(Category).where(Category.slug == bindparam("slug"))


async def find(session: AsyncSession, value: str) -> Category | None:
    """The entry whose slug or name is ``value`` without regard to case (retired too).

    Compared in Python (``str.casefold``), not with SQL ``lower()``, which SQLite applies to
    ASCII only: "émission" must find "Émission" on both databases. The catalogue is a list
    admins keep by hand, so reading it whole is cheap."""
    key = value.strip().casefold()
    if not key or len(key) > max(NAME_MAX, SLUG_MAX):
        return None
    entries = (await session.scalars(select(Category).order_by(Category.id))).all()
    # A slug match wins over another entry's name that happens to spell the same.
    for entry in entries:
        if entry.slug == key:
            return entry
    for entry in entries:
        if entry.name.casefold() == key:
            return entry
    return None


async def resolve_choice(
    session: AsyncSession, value: Any, current_id: int | None = None
) -> Category | None:
    """The entry a channel or stream form chose: None for null or "" (no category); an
    unknown or retired one is a ValidationError that says so (``current_id``, the entry the
    row has now, is kept even when retired)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError("category must be a catalogue name or slug (a string), or null")
    if not value.strip():
        return None
    entry = await find(session, value)
    shown = value.strip()[:80]
    if entry is None:
        raise ValidationError(
            f"unknown category {shown!r}: pick one of the catalogue (see GET /api/categories)"
        )
    if entry.retired_at is not None and entry.id != current_id:
        raise ValidationError(f"the category {entry.name!r} is retired: pick another one")
    return entry


# -- a channel's or a stream's category ------------------------------------------------------


def _assign(row: Channel | Stream, entry: Category | None) -> None:
    row.category_id = None if entry is None else entry.id
    row.category = None if entry is None else entry.name
    row.category_entry = entry


async def set_channel_category(session: AsyncSession, channel: Channel, value: Any) -> None:
    """Point ``channel`` at the entry ``value`` names (see ``resolve_choice``)."""
    _assign(channel, await resolve_choice(session, value, channel.category_id))
    await session.flush()


async def set_stream_category(session: AsyncSession, stream: Stream, value: Any) -> None:
    _assign(stream, await resolve_choice(session, value, stream.category_id))
    await session.flush()


# -- the catalogue itself (admins) -----------------------------------------------------------


async def _check_free(
    session: AsyncSession, name: str | None, slug: str | None, own_id: int | None
) -> None:
    """ConflictError when another entry has this name (any case) or slug."""
    if name is not None:
        key = name.casefold()
        names = (await session.execute(select(Category.id, Category.name))).all()
        if any(cid != own_id and str(other).casefold() == key for cid, other in names):
            raise ConflictError(f"a category named {name!r} already exists")
    if slug is not None:
        clash = await session.scalar(select(Category.id).where(Category.slug == slug))
        if clash is not None and clash != own_id:
            raise ConflictError(f"the category slug {slug!r} is already taken")


async def _flush_or_conflict(session: AsyncSession) -> None:
    """Flush; two admins racing to the same name or slug get a ConflictError, not a 500."""
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise ConflictError("a category with this name or slug was just added") from None


async def create_category(session: AsyncSession, fields: Mapping[str, Any]) -> Category:
    """A new active entry from ``name`` (required), ``slug`` (default: made from the name)
    and ``description``; ``retired`` may create it retired."""
    cleaned = clean_changes(fields)
    if "name" not in cleaned:
        raise ValidationError("category name is required")
    name = cleaned["name"]
    slug = cleaned.get("slug") or slug_for(name)
    await _check_free(session, name, slug, None)
    entry = Category(
        name=name,
        slug=slug,
        description=cleaned.get("description", ""),
        created_at=utcnow(),
        retired_at=utcnow() if cleaned.get("retired") else None,
    )
    session.add(entry)
    await _flush_or_conflict(session)
    return entry


async def update_category(
    session: AsyncSession, entry: Category, changes: Mapping[str, Any]
) -> Category:
    """Edit an entry; a new name is copied to every channel and stream that has it, so what
    pages show follows at once. ``retired`` true retires (kept on the rows that have it,
    hidden from pickers and lists), false brings it back."""
    cleaned = clean_changes(changes)
    await _check_free(session, cleaned.get("name"), cleaned.get("slug"), entry.id)
    renamed = "name" in cleaned and cleaned["name"] != entry.name
    for key in ("name", "slug", "description"):
        if key in cleaned:
            setattr(entry, key, cleaned[key])
    if "retired" in cleaned:
        if cleaned["retired"] and entry.retired_at is None:
            entry.retired_at = utcnow()
        elif not cleaned["retired"]:
            entry.retired_at = None
    await _flush_or_conflict(session)
    if renamed:
        for table in (Channel, Stream):
            await session.execute(
                update(table)
                .where(table.category_id == entry.id)
                .values(category=entry.name)
                .execution_options(synchronize_session=False)
            )
        # Rows already in this session see the new name too.
        for obj in list(session.identity_map.values()):
            if isinstance(obj, (Channel, Stream)) and obj.category_id == entry.id:
                obj.category = entry.name
        await session.flush()
    return entry


async def set_box_art(session: AsyncSession, entry: Category, path: str | None) -> str | None:
    """Point the entry at an uploaded image (None: none); returns the name it had before."""
    old = entry.box_art_path
    entry.box_art_path = path
    await session.flush()
    return old


__all__ = [
    "CATEGORY_FIELDS",
    "NAME_MAX",
    "SLUG_MAX",
    "DESCRIPTION_MAX",
    "SLUG_RE",
    "slug_for",
    "clean_changes",
    "list_categories",
    "get_category",
    "get_by_slug",
    "find",
    "resolve_choice",
    "set_channel_category",
    "set_stream_category",
    "create_category",
    "update_category",
    "set_box_art",
]
