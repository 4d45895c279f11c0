"""Full-text search: channels (name, slug, live or last broadcast's title, description, tags),
users (username, display name), categories (name) and past broadcasts (title).

SQLite: FTS5 tables with the ``unicode61`` tokenizer (accents folded, prefix indexes for
as-you-type) and, for typo tolerance, ``trigram`` tables over the names; triggers on the
indexed tables keep both current, so every write path (ORM, raw SQL, a later migration's
UPDATE) is covered without anyone having to remember the index. The rowid of each FTS row is
the id of its row (channel, user, category, stream).

PostgreSQL: expression GIN indexes on ``to_tsvector('simple', ...)`` (the same words with no
stemming, like SQLite), ``pg_trgm`` GIN indexes on the lower-cased names for typo tolerance,
and btree indexes on the lower-cased names (C collation) for "starts with". Expression
indexes are kept current by PostgreSQL itself. ``storage.search`` writes the very same
expressions, or the planner would not use the indexes.

None of these is a model: ``storage.search_schema`` names them so comparing the schema with
the models leaves them out. A later SQLite migration that rebuilds an indexed table must create
its triggers again (a rebuild drops them).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WORDS = "tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3'"
TRIGRAMS = "tokenize = 'trigram'"


def _tags(row: str) -> str:
    """A channel's tags (a JSON array) as words; nothing for anything but valid JSON."""
    return (
        "(SELECT group_concat(value, ' ') FROM json_each("
        f"CASE WHEN json_valid({row}.tags) THEN {row}.tags END))"
    )


def _last_title(channel_id: str) -> str:
    """The title of a channel's live or most recent broadcast ('' before its first)."""
    return (
        "coalesce((SELECT s.title FROM streams s WHERE s.channel_id = "
        f"{channel_id} ORDER BY s.id DESC LIMIT 1), '')"
    )


def _display_name(user_id: str) -> str:
    return f"coalesce((SELECT p.display_name FROM profiles p WHERE p.user_id = {user_id}), '')"


SQLITE_TABLES = (
    f"CREATE VIRTUAL TABLE search_channels USING fts5(name, slug, title, description, tags, "
    f"{WORDS})",
    f"CREATE VIRTUAL TABLE search_channels_fuzzy USING fts5(name, {TRIGRAMS})",
    f"CREATE VIRTUAL TABLE search_users USING fts5(username, display_name, {WORDS})",
    f"CREATE VIRTUAL TABLE search_users_fuzzy USING fts5(username, display_name, {TRIGRAMS})",
    f"CREATE VIRTUAL TABLE search_categories USING fts5(name, {WORDS})",
    f"CREATE VIRTUAL TABLE search_categories_fuzzy USING fts5(name, {TRIGRAMS})",
    f"CREATE VIRTUAL TABLE search_videos USING fts5(title, {WORDS})",
    f"CREATE VIRTUAL TABLE search_videos_fuzzy USING fts5(title, {TRIGRAMS})",
)

SQLITE_TRIGGERS = (
    # channels
    f"""CREATE TRIGGER search_channels_insert AFTER INSERT ON channels BEGIN
      INSERT INTO search_channels (rowid, name, slug, title, description, tags)
      VALUES (new.id, new.name, new.slug, {_last_title("new.id")}, new.description,
              {_tags("new")});
      INSERT INTO search_channels_fuzzy (rowid, name) VALUES (new.id, new.name);
    END""",
    f"""CREATE TRIGGER search_channels_update
    AFTER UPDATE OF name, slug, description, tags ON channels BEGIN
      UPDATE search_channels SET name = new.name, slug = new.slug,
        description = new.description, tags = {_tags("new")} WHERE rowid = new.id;
      UPDATE search_channels_fuzzy SET name = new.name WHERE rowid = new.id;
    END""",
    """CREATE TRIGGER search_channels_delete AFTER DELETE ON channels BEGIN
      DELETE FROM search_channels WHERE rowid = old.id;
      DELETE FROM search_channels_fuzzy WHERE rowid = old.id;
    END""",
    # streams: past broadcasts, and the channel's live or last title
    f"""CREATE TRIGGER search_streams_insert AFTER INSERT ON streams BEGIN
      INSERT INTO search_videos (rowid, title) VALUES (new.id, new.title);
      INSERT INTO search_videos_fuzzy (rowid, title) VALUES (new.id, new.title);
      UPDATE search_channels SET title = {_last_title("new.channel_id")}
      WHERE rowid = new.channel_id;
    END""",
    f"""CREATE TRIGGER search_streams_update AFTER UPDATE OF title, channel_id ON streams BEGIN
      UPDATE search_videos SET title = new.title WHERE rowid = new.id;
      UPDATE search_videos_fuzzy SET title = new.title WHERE rowid = new.id;
      UPDATE search_channels SET title = {_last_title("search_channels.rowid")}
      WHERE rowid IN (old.channel_id, new.channel_id);
    END""",
    f"""CREATE TRIGGER search_streams_delete AFTER DELETE ON streams BEGIN
      DELETE FROM search_videos WHERE rowid = old.id;
      DELETE FROM search_videos_fuzzy WHERE rowid = old.id;
      UPDATE search_channels SET title = {_last_title("old.channel_id")}
      WHERE rowid = old.channel_id;
    END""",
    # users, and their display name from the profile
    f"""CREATE TRIGGER search_users_insert AFTER INSERT ON users BEGIN
      INSERT INTO search_users (rowid, username, display_name)
      VALUES (new.id, new.username, {_display_name("new.id")});
      INSERT INTO search_users_fuzzy (rowid, username, display_name)
      VALUES (new.id, new.username, {_display_name("new.id")});
    END""",
    """CREATE TRIGGER search_users_update AFTER UPDATE OF username ON users BEGIN
      UPDATE search_users SET username = new.username WHERE rowid = new.id;
      UPDATE search_users_fuzzy SET username = new.username WHERE rowid = new.id;
    END""",
    """CREATE TRIGGER search_users_delete AFTER DELETE ON users BEGIN
      DELETE FROM search_users WHERE rowid = old.id;
      DELETE FROM search_users_fuzzy WHERE rowid = old.id;
    END""",
    """CREATE TRIGGER search_profiles_insert AFTER INSERT ON profiles BEGIN
      UPDATE search_users SET display_name = new.display_name WHERE rowid = new.user_id;
      UPDATE search_users_fuzzy SET display_name = new.display_name WHERE rowid = new.user_id;
    END""",
    """CREATE TRIGGER search_profiles_update AFTER UPDATE OF display_name ON profiles BEGIN
      UPDATE search_users SET display_name = new.display_name WHERE rowid = new.user_id;
      UPDATE search_users_fuzzy SET display_name = new.display_name WHERE rowid = new.user_id;
    END""",
    """CREATE TRIGGER search_profiles_delete AFTER DELETE ON profiles BEGIN
      UPDATE search_users SET display_name = '' WHERE rowid = old.user_id;
      UPDATE search_users_fuzzy SET display_name = '' WHERE rowid = old.user_id;
    END""",
    # categories
    """CREATE TRIGGER search_categories_insert AFTER INSERT ON categories BEGIN
      INSERT INTO search_categories (rowid, name) VALUES (new.id, new.name);
      INSERT INTO search_categories_fuzzy (rowid, name) VALUES (new.id, new.name);
    END""",
    """CREATE TRIGGER search_categories_update AFTER UPDATE OF name ON categories BEGIN
      UPDATE search_categories SET name = new.name WHERE rowid = new.id;
      UPDATE search_categories_fuzzy SET name = new.name WHERE rowid = new.id;
    END""",
    """CREATE TRIGGER search_categories_delete AFTER DELETE ON categories BEGIN
      DELETE FROM search_categories WHERE rowid = old.id;
      DELETE FROM search_categories_fuzzy WHERE rowid = old.id;
    END""",
)

# The rows that exist already.
SQLITE_BACKFILL = (
    f"""INSERT INTO search_channels (rowid, name, slug, title, description, tags)
    SELECT c.id, c.name, c.slug, {_last_title("c.id")}, c.description, {_tags("c")}
    FROM channels c""",
    "INSERT INTO search_channels_fuzzy (rowid, name) SELECT id, name FROM channels",
    f"""INSERT INTO search_users (rowid, username, display_name)
    SELECT u.id, u.username, {_display_name("u.id")} FROM users u""",
    f"""INSERT INTO search_users_fuzzy (rowid, username, display_name)
    SELECT u.id, u.username, {_display_name("u.id")} FROM users u""",
    "INSERT INTO search_categories (rowid, name) SELECT id, name FROM categories",
    "INSERT INTO search_categories_fuzzy (rowid, name) SELECT id, name FROM categories",
    "INSERT INTO search_videos (rowid, title) SELECT id, title FROM streams",
    "INSERT INTO search_videos_fuzzy (rowid, title) SELECT id, title FROM streams",
)

# PostgreSQL: storage.search repeats these expressions word for word.
PG_CHANNEL_DOCUMENT = (
    "to_tsvector('simple', name || ' ' || slug || ' ' || description || ' ' || "
    "coalesce(tags::text, ''))"
)
PG_STATEMENTS = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    f"CREATE INDEX search_channels_tsv ON channels USING gin (({PG_CHANNEL_DOCUMENT}))",
    "CREATE INDEX search_channels_name_trgm ON channels USING gin (lower(name) gin_trgm_ops)",
    'CREATE INDEX search_channels_name_prefix ON channels ((lower(name) COLLATE "C"))',
    "CREATE INDEX search_streams_title_tsv ON streams USING gin ((to_tsvector('simple', title)))",
    "CREATE INDEX search_streams_title_trgm ON streams USING gin (lower(title) gin_trgm_ops)",
    'CREATE INDEX search_streams_title_prefix ON streams ((lower(title) COLLATE "C"))',
    "CREATE INDEX search_users_username_tsv ON users USING gin ((to_tsvector('simple', username)))",
    "CREATE INDEX search_users_username_trgm ON users USING gin (lower(username) gin_trgm_ops)",
    'CREATE INDEX search_users_username_prefix ON users ((lower(username) COLLATE "C"))',
    "CREATE INDEX search_profiles_display_name_tsv ON profiles USING gin "
    "((to_tsvector('simple', display_name)))",
    "CREATE INDEX search_profiles_display_name_trgm ON profiles USING gin "
    "(lower(display_name) gin_trgm_ops)",
    "CREATE INDEX search_profiles_display_name_prefix ON profiles "
    '((lower(display_name) COLLATE "C"))',
    "CREATE INDEX search_categories_name_tsv ON categories USING gin "
    "((to_tsvector('simple', name)))",
    "CREATE INDEX search_categories_name_trgm ON categories USING gin (lower(name) gin_trgm_ops)",
    'CREATE INDEX search_categories_name_prefix ON categories ((lower(name) COLLATE "C"))',
)
PG_INDEXES = tuple(
    statement.split()[2] for statement in PG_STATEMENTS if statement.startswith("CREATE INDEX")
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in (*SQLITE_TABLES, *SQLITE_BACKFILL, *SQLITE_TRIGGERS):
            op.execute(statement)
    elif dialect == "postgresql":
        for statement in PG_STATEMENTS:
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {statement.split()[2]}")
        for statement in SQLITE_TABLES:
            op.execute(f"DROP TABLE IF EXISTS {statement.split()[3]}")
    elif dialect == "postgresql":
        for name in PG_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
