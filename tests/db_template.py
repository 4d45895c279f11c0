"""Migrated databases for tests, fast: a fresh SQLite file starts as a copy of one migrated once
per test process.

Alembic on an empty database runs every revision (0.5-1 s on a 2-core machine), and hundreds of
tests start a server on a fresh data dir: that was minutes of the suite. The template is made by
the same ``storage.upgrade`` from the code under test, once per process, so it is never stale;
the copy is then brought to head by ``upgrade`` as before (a no-op check when it is there).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

from sqlalchemy.engine import make_url

from storage import upgrade

_lock = threading.Lock()
_template: Path | None = None


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _made_template() -> Path:
    global _template
    with _lock:
        if _template is None:
            path = Path(tempfile.mkdtemp(prefix="aethex-db-template-")) / "aethex.db"
            upgrade(f"sqlite+aiosqlite:///{path}")
            _template = path
        return _template


def migrate(url: str) -> None:
    """``storage.upgrade(url)``, starting a SQLite file that does not exist yet from the
    process's migrated template."""
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_made_template(), path)
    upgrade(url)
