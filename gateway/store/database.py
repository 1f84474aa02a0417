"""Opening the SQLite state store: private files, WAL, foreign keys, the schema migrated.

The schema and its migrations are in :mod:`gateway.store.schema`; transactions go through
:mod:`gateway.store.tx`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

import sqlite_utils

from gateway.errors import StorageError
from gateway.store import schema

log = logging.getLogger(__name__)


def _secure_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _restrict(path, 0o700)


def _restrict(path: Path, mode: int) -> None:
    """chmod ``path`` to ``mode`` when it is wider; on a read-only filesystem say so and go
    on (the open then falls back to read-only, see :mod:`gateway.store.readonly`)."""
    if stat.S_IMODE(path.stat().st_mode) & ~mode & 0o777 == 0:
        return
    try:
        path.chmod(mode)
    except OSError as exc:
        log.error("cannot restrict %s to %o: %s", path, mode, exc)


def connect(
    path: Path | str, *, create: bool = True, busy_timeout_ms: int = 5000
) -> sqlite_utils.Database:
    """Open (and migrate) the state database; ``:memory:`` is allowed for tests.

    ``busy_timeout_ms``: how long a statement waits for another writer. Connections used on
    the event loop (the outbox) pass a short one, so that a database locked from outside
    stalls nothing for long: they fall back to memory instead.
    """
    memory = str(path) == ":memory:"
    if not memory:
        p = Path(path)
        if not create and not p.exists():
            raise StorageError(f"state database {p} does not exist")
        _secure_dir(p.parent)
        if not p.exists():
            fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        _restrict(p, 0o600)
    try:
        conn = sqlite3.connect(
            str(path), timeout=5.0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA secure_delete = ON")
        if not memory:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA busy_timeout = 5000")  # the migration may wait for a writer
        schema.migrate(conn)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"cannot open state database {path}: {exc}") from exc
    return sqlite_utils.Database(conn)


def integrity_ok(db: sqlite_utils.Database) -> bool:
    """Return True when ``PRAGMA integrity_check`` reports ``ok``."""
    row = db.execute("PRAGMA integrity_check").fetchone()
    return bool(row and row[0] == "ok")
