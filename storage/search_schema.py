"""The names of the full-text search objects, which live in the database but not in the models.

Migration 0007 creates them: on SQLite, FTS5 virtual tables (each with the shadow tables FTS5
keeps its index in) and the triggers that keep them current; on PostgreSQL, expression GIN
indexes (``tsvector``) and btree prefix indexes, with trigger functions that fill the
vocabulary table ``search_terms`` (both databases; ``pg_trgm`` or an FTS5 trigram table over
it for typo tolerance). None of them is a
SQLAlchemy model (a virtual table or an expression index has no portable model), so comparing
the database with the models must skip them, and only them: ``include_object`` names each one
instead of skipping, say, every index whose name starts with "search".

A later SQLite migration that rebuilds one of the indexed tables (a batch "move and copy" of
``channels``, ``streams``, ``users``, ``profiles`` or ``categories``) drops that table's
triggers with it: it must create them again (``tests/unit/test_storage_migrations.py`` checks
that every trigger named here exists at head).
"""

from __future__ import annotations

from typing import Any

# FTS5 virtual tables (SQLite): word tables for matching, a trigram table over the vocabulary
# for typo tolerance.
FTS_TABLES = (
    "search_channels",
    "search_users",
    "search_categories",
    "search_videos",
    "search_terms_fuzzy",
)
# The vocabulary of the names (both databases).
VOCABULARY_TABLE = "search_terms"
# Each channel's live or latest broadcast title (PostgreSQL; SQLite keeps it in
# search_channels).
CHANNEL_TITLES_TABLE = "search_channel_titles"
# What FTS5 creates beside each virtual table to hold its index.
FTS_SHADOW_SUFFIXES = ("_data", "_idx", "_content", "_docsize", "_config")

SQLITE_TRIGGERS = (
    "search_terms_insert",
    "search_channels_insert",
    "search_channels_update",
    "search_channels_delete",
    "search_streams_insert",
    "search_streams_update",
    "search_streams_delete",
    "search_users_insert",
    "search_users_update",
    "search_users_delete",
    "search_profiles_insert",
    "search_profiles_update",
    "search_profiles_delete",
    "search_categories_insert",
    "search_categories_update",
    "search_categories_delete",
)

# PostgreSQL expression indexes.
PG_INDEXES = (
    "search_channels_tsv",
    "search_channels_name_prefix",
    "search_streams_title_tsv",
    "search_streams_title_prefix",
    "search_users_username_tsv",
    "search_users_username_prefix",
    "search_profiles_display_name_tsv",
    "search_profiles_display_name_prefix",
    "search_categories_name_tsv",
    "search_categories_name_prefix",
    "search_terms_trgm",
    "search_channel_titles_tsv",
)

# The tables of the search on SQLite, and on either database.
SQLITE_SEARCH_TABLES = frozenset(
    {VOCABULARY_TABLE}
    | {name + suffix for name in FTS_TABLES for suffix in ("", *FTS_SHADOW_SUFFIXES)}
)
SEARCH_TABLES = SQLITE_SEARCH_TABLES | {CHANNEL_TITLES_TABLE}
SEARCH_INDEXES = frozenset(PG_INDEXES)


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's ``include_object`` hook: everything but the search objects named above."""
    if type_ == "table" and name in SEARCH_TABLES:
        return False
    return not (type_ == "index" and name in SEARCH_INDEXES)
