"""Storage: SQLAlchemy 2 async models and queries, Alembic migrations.

SQLite (aiosqlite, WAL) by default, PostgreSQL (asyncpg) by URL. Typical use::

    from storage import Database, upgrade, queries

    upgrade(url)                      # sync; safe to call at every start
    db = Database(url)
    await db.connect()
    async with db.session() as s:
        channel = await queries.find_channel_by_stream_key(s, key)
        ...
        await s.commit()
"""

from storage import (
    analytics_models,  # noqa: F401 - the same for the analytics samples and rollups
    chat_models,  # noqa: F401 - registers the chat tables on models.Base: the metadata is whole
    community_models,  # noqa: F401 - the same for the community channels (issue 16)
    creator_models,  # noqa: F401 - the same for chapters, views and clips
    discovery_models,  # noqa: F401 - the same for categories, history, notifications, webhooks
    emote_models,  # noqa: F401 - the same for the emotes (issue 16)
    errors,
    models,
    points_models,  # noqa: F401 - the same for channel points, rewards, predictions
    poll_models,  # noqa: F401 - the same for polls and their votes
    queries,
    raid_models,  # noqa: F401 - the same for raids and the chat extras' settings
    restream_models,  # noqa: F401 - the same for the restreaming destinations
)
from storage.db import Database, create_engine, upgrade
from storage.errors import ConflictError, NotFoundError, StorageError, ValidationError
from storage.models import ReportStatus, StreamStatus

__all__ = [
    "Database",
    "upgrade",
    "create_engine",
    "models",
    "queries",
    "errors",
    "StorageError",
    "ValidationError",
    "ConflictError",
    "NotFoundError",
    "StreamStatus",
    "ReportStatus",
]
