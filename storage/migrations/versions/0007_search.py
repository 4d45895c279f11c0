"""Full-text search: channels (name, slug, live or last broadcast's title, description, tags),
users (username, display name), categories (name) and past broadcasts (title).

SQLite: FTS5 tables with the ``unicode61`` tokenizer (accents folded, prefix indexes for
as-you-type); triggers on the indexed tables keep them current, so every write path (ORM, raw
SQL, a later migration's UPDATE) is covered without anyone having to remember the index. The
rowid of each FTS row is the id of its row (channel, user, category, stream).

PostgreSQL: expression GIN indexes on ``to_tsvector('simple', ...)`` (the same words with no
stemming, like SQLite) and btree indexes on the lower-cased names (C collation) for "starts
with", kept current by PostgreSQL itself. ``storage.search`` writes the very same
expressions, or the planner would not use the indexes.

Typo tolerance, both databases: ``search_terms`` is the vocabulary of the names (words of 4 to
40 letters, no digits), filled by triggers, with a trigram index over it (an FTS5 ``trigram``
table on SQLite, a ``pg_trgm`` GIN index on PostgreSQL). A misspelt word is looked up there
(a few thousand distinct words, not a hundred thousand rows) and the search runs again with
the words it is close to. Words are never removed from the vocabulary: a stale one only costs
a lookup that finds no row.

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


# Characters that become spaces before the vocabulary splits a name on spaces: common word
# joiners, and what JSON strings cannot hold as they are. Punctuation left at either end of a
# word is trimmed (SQLite has no tokenizer function, and a replace() per character would nest
# deeper than its parser allows).
_SEPARATORS = '-_/"\\\t\r\n'
_TRIM = "-_.,;:!?'\"()[]{}<>/|+*&^%$#@~`="


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _vocabulary(expression: str, source: str = "") -> str:
    """A SELECT of the words of ``expression`` worth a typo lookup (4 to 40 characters, no
    digits). Anything json_each would refuse (other control characters) yields nothing, never
    an error that would fail the write."""
    text = f"lower(coalesce({expression}, ''))"
    for ch in _SEPARATORS:
        text = f"replace({text}, {_sql_string(ch)}, ' ')"
    array = f"""('["' || replace({text}, ' ', '","') || '"]')"""
    word = f"trim(value, {_sql_string(_TRIM)})"
    return (
        f"SELECT {word} FROM {source}json_each("
        f"CASE WHEN json_valid({array}) THEN {array} ELSE '[]' END) "
        f"WHERE length({word}) BETWEEN 4 AND 40 AND {word} NOT GLOB '*[0-9]*'"
    )


def _learn(*expressions: str, source: str = "") -> str:
    """Add the words of ``expressions`` to the vocabulary (known words are skipped);
    ``source`` ("channels c, ") for the rows of a whole table."""
    selects = " UNION ".join(_vocabulary(e, source) for e in expressions)
    return f"INSERT OR IGNORE INTO search_terms (term) {selects};"


SQLITE_TABLES = (
    f"CREATE VIRTUAL TABLE search_channels USING fts5(name, slug, title, description, tags, "
    f"{WORDS})",
    f"CREATE VIRTUAL TABLE search_users USING fts5(username, display_name, {WORDS})",
    f"CREATE VIRTUAL TABLE search_categories USING fts5(name, {WORDS})",
    f"CREATE VIRTUAL TABLE search_videos USING fts5(title, {WORDS})",
    "CREATE TABLE search_terms (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE)",
    f"CREATE VIRTUAL TABLE search_terms_fuzzy USING fts5(term, {TRIGRAMS})",
)

SQLITE_TRIGGERS = (
    """CREATE TRIGGER search_terms_insert AFTER INSERT ON search_terms BEGIN
      INSERT INTO search_terms_fuzzy (rowid, term) VALUES (new.id, new.term);
    END""",
    # channels
    f"""CREATE TRIGGER search_channels_insert AFTER INSERT ON channels BEGIN
      INSERT INTO search_channels (rowid, name, slug, title, description, tags)
      VALUES (new.id, new.name, new.slug, {_last_title("new.id")}, new.description,
              {_tags("new")});
      {_learn("new.name", _tags("new"))}
    END""",
    f"""CREATE TRIGGER search_channels_update
    AFTER UPDATE OF name, slug, description, tags ON channels BEGIN
      UPDATE search_channels SET name = new.name, slug = new.slug,
        description = new.description, tags = {_tags("new")} WHERE rowid = new.id;
      {_learn("new.name", _tags("new"))}
    END""",
    """CREATE TRIGGER search_channels_delete AFTER DELETE ON channels BEGIN
      DELETE FROM search_channels WHERE rowid = old.id;
    END""",
    # streams: past broadcasts, and the channel's live or last title
    f"""CREATE TRIGGER search_streams_insert AFTER INSERT ON streams BEGIN
      INSERT INTO search_videos (rowid, title) VALUES (new.id, new.title);
      UPDATE search_channels SET title = {_last_title("new.channel_id")}
      WHERE rowid = new.channel_id;
      {_learn("new.title")}
    END""",
    f"""CREATE TRIGGER search_streams_update AFTER UPDATE OF title, channel_id ON streams BEGIN
      UPDATE search_videos SET title = new.title WHERE rowid = new.id;
      UPDATE search_channels SET title = {_last_title("search_channels.rowid")}
      WHERE rowid IN (old.channel_id, new.channel_id);
      {_learn("new.title")}
    END""",
    f"""CREATE TRIGGER search_streams_delete AFTER DELETE ON streams BEGIN
      DELETE FROM search_videos WHERE rowid = old.id;
      UPDATE search_channels SET title = {_last_title("old.channel_id")}
      WHERE rowid = old.channel_id;
    END""",
    # users, and their display name from the profile
    f"""CREATE TRIGGER search_users_insert AFTER INSERT ON users BEGIN
      INSERT INTO search_users (rowid, username, display_name)
      VALUES (new.id, new.username, {_display_name("new.id")});
      {_learn("new.username")}
    END""",
    f"""CREATE TRIGGER search_users_update AFTER UPDATE OF username ON users BEGIN
      UPDATE search_users SET username = new.username WHERE rowid = new.id;
      {_learn("new.username")}
    END""",
    """CREATE TRIGGER search_users_delete AFTER DELETE ON users BEGIN
      DELETE FROM search_users WHERE rowid = old.id;
    END""",
    f"""CREATE TRIGGER search_profiles_insert AFTER INSERT ON profiles BEGIN
      UPDATE search_users SET display_name = new.display_name WHERE rowid = new.user_id;
      {_learn("new.display_name")}
    END""",
    f"""CREATE TRIGGER search_profiles_update AFTER UPDATE OF display_name ON profiles BEGIN
      UPDATE search_users SET display_name = new.display_name WHERE rowid = new.user_id;
      {_learn("new.display_name")}
    END""",
    """CREATE TRIGGER search_profiles_delete AFTER DELETE ON profiles BEGIN
      UPDATE search_users SET display_name = '' WHERE rowid = old.user_id;
    END""",
    # categories
    f"""CREATE TRIGGER search_categories_insert AFTER INSERT ON categories BEGIN
      INSERT INTO search_categories (rowid, name) VALUES (new.id, new.name);
      {_learn("new.name")}
    END""",
    f"""CREATE TRIGGER search_categories_update AFTER UPDATE OF name ON categories BEGIN
      UPDATE search_categories SET name = new.name WHERE rowid = new.id;
      {_learn("new.name")}
    END""",
    """CREATE TRIGGER search_categories_delete AFTER DELETE ON categories BEGIN
      DELETE FROM search_categories WHERE rowid = old.id;
    END""",
)

# The rows that exist already (the vocabulary trigger is created first: it fills the trigram
# table from the words learnt here).
SQLITE_BACKFILL = (
    f"""INSERT INTO search_channels (rowid, name, slug, title, description, tags)
    SELECT c.id, c.name, c.slug, {_last_title("c.id")}, c.description, {_tags("c")}
    FROM channels c""",
    f"""INSERT INTO search_users (rowid, username, display_name)
    SELECT u.id, u.username, {_display_name("u.id")} FROM users u""",
    "INSERT INTO search_categories (rowid, name) SELECT id, name FROM categories",
    "INSERT INTO search_videos (rowid, title) SELECT id, title FROM streams",
    _learn("c.name", _tags("c"), source="channels c, "),
    _learn("s.title", source="streams s, "),
    _learn("u.username", source="users u, "),
    _learn("p.display_name", source="profiles p, "),
    _learn("c.name", source="categories c, "),
)

# PostgreSQL: storage.search repeats these expressions word for word.
PG_CHANNEL_DOCUMENT = (
    "to_tsvector('simple', name || ' ' || slug || ' ' || description || ' ' || "
    "coalesce(tags::text, ''))"
)
# Words of 4 to 40 letters (no digits) of a tsvector, as the vocabulary keeps them.
PG_LEARN = """INSERT INTO search_terms (term)
    SELECT DISTINCT w.lexeme FROM {source}unnest({vector}) w
    WHERE length(w.lexeme) BETWEEN 4 AND 40 AND w.lexeme !~ '[0-9]'
    ON CONFLICT DO NOTHING"""
# What each table teaches the vocabulary ({row}: NEW in a trigger, the table in the backfill)
# and the columns whose change re-teaches it (not every viewer-count or follower update).
PG_VOCABULARY = {
    "channels": "to_tsvector('simple', {row}.name || ' ' || coalesce({row}.tags::text, ''))",
    "streams": "to_tsvector('simple', {row}.title)",
    "users": "to_tsvector('simple', {row}.username)",
    "profiles": "to_tsvector('simple', {row}.display_name)",
    "categories": "to_tsvector('simple', {row}.name)",
}
PG_VOCABULARY_COLUMNS = {
    "channels": "name, tags",
    "streams": "title",
    "users": "username",
    "profiles": "display_name",
    "categories": "name",
}


def _pg_learner(table: str) -> tuple[str, ...]:
    """A trigger function and its trigger: new and changed rows teach the vocabulary."""
    function = f"search_learn_{table}"
    vector = PG_VOCABULARY[table].format(row="NEW")
    return (
        f"""CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          {PG_LEARN.format(source="", vector=vector)};
          RETURN NULL;
        END $$""",
        f"CREATE TRIGGER {function} AFTER INSERT OR UPDATE OF {PG_VOCABULARY_COLUMNS[table]} "
        f"ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()",
        PG_LEARN.format(source=f"{table}, ", vector=PG_VOCABULARY[table].format(row=table)),
    )


# The title of each channel's live or latest broadcast, kept by a trigger on streams: what
# SQLite keeps in search_channels.title. Searching 10,000 of these beats searching 100,000
# broadcasts and then asking which of them are their channel's latest.
PG_CHANNEL_TITLES = (
    "CREATE TABLE search_channel_titles (channel_id integer PRIMARY KEY, title text NOT NULL)",
    "CREATE INDEX search_channel_titles_tsv ON search_channel_titles USING gin "
    "((to_tsvector('simple', title)))",
    """CREATE FUNCTION search_channel_title() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      cid integer;
    BEGIN
      FOR cid IN
        SELECT DISTINCT x FROM unnest(ARRAY[
          CASE WHEN TG_OP <> 'INSERT' THEN OLD.channel_id END,
          CASE WHEN TG_OP <> 'DELETE' THEN NEW.channel_id END]) AS x
        WHERE x IS NOT NULL
      LOOP
        INSERT INTO search_channel_titles (channel_id, title)
          SELECT cid, s.title FROM streams s
          WHERE s.channel_id = cid AND s.started_at IS NOT NULL
          ORDER BY s.started_at DESC LIMIT 1
        ON CONFLICT (channel_id) DO UPDATE SET title = EXCLUDED.title;
        IF NOT FOUND THEN
          DELETE FROM search_channel_titles WHERE channel_id = cid;
        END IF;
      END LOOP;
      RETURN NULL;
    END $$""",
    "CREATE TRIGGER search_channel_title AFTER INSERT OR DELETE "
    "OR UPDATE OF title, channel_id, started_at ON streams "
    "FOR EACH ROW EXECUTE FUNCTION search_channel_title()",
    """INSERT INTO search_channel_titles (channel_id, title)
    SELECT DISTINCT ON (channel_id) channel_id, title FROM streams
    WHERE started_at IS NOT NULL ORDER BY channel_id, started_at DESC""",
)
PG_STATEMENTS = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    f"CREATE INDEX search_channels_tsv ON channels USING gin (({PG_CHANNEL_DOCUMENT}))",
    'CREATE INDEX search_channels_name_prefix ON channels ((lower(name) COLLATE "C"))',
    "CREATE INDEX search_streams_title_tsv ON streams USING gin ((to_tsvector('simple', title)))",
    'CREATE INDEX search_streams_title_prefix ON streams ((lower(title) COLLATE "C"))',
    "CREATE INDEX search_users_username_tsv ON users USING gin ((to_tsvector('simple', username)))",
    'CREATE INDEX search_users_username_prefix ON users ((lower(username) COLLATE "C"))',
    "CREATE INDEX search_profiles_display_name_tsv ON profiles USING gin "
    "((to_tsvector('simple', display_name)))",
    "CREATE INDEX search_profiles_display_name_prefix ON profiles "
    '((lower(display_name) COLLATE "C"))',
    "CREATE INDEX search_categories_name_tsv ON categories USING gin "
    "((to_tsvector('simple', name)))",
    'CREATE INDEX search_categories_name_prefix ON categories ((lower(name) COLLATE "C"))',
    "CREATE TABLE search_terms (id bigserial PRIMARY KEY, term text NOT NULL UNIQUE)",
    "CREATE INDEX search_terms_trgm ON search_terms USING gin (term gin_trgm_ops)",
    *(statement for table in PG_VOCABULARY for statement in _pg_learner(table)),
    *PG_CHANNEL_TITLES,
)


def _created_name(statement: str) -> str:
    """The name a CREATE [VIRTUAL] TABLE / INDEX statement creates."""
    words = statement.split()
    return words[3] if words[1] == "VIRTUAL" else words[2]


PG_INDEXES = tuple(
    _created_name(statement) for statement in PG_STATEMENTS if statement.startswith("CREATE INDEX")
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in (*SQLITE_TABLES, *SQLITE_TRIGGERS, *SQLITE_BACKFILL):
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
            op.execute(f"DROP TABLE IF EXISTS {_created_name(statement)}")
    elif dialect == "postgresql":
        for table in PG_VOCABULARY:
            op.execute(f"DROP TRIGGER IF EXISTS search_learn_{table} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS search_learn_{table}()")
        op.execute("DROP TRIGGER IF EXISTS search_channel_title ON streams")
        op.execute("DROP FUNCTION IF EXISTS search_channel_title()")
        op.execute("DROP TABLE IF EXISTS search_channel_titles")
        op.execute("DROP TABLE IF EXISTS search_terms")
        for name in PG_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
