"""Open the state database when the storage cannot be written (an SD card the kernel
remounted read-only, a read-only file): the daemon then runs DEGRADED.

:func:`open_state` tries the normal read-write open (:func:`gateway.store.database.connect`);
when that fails and the database file or its folder is not writable, it opens the database read-only
(``mode=ro``, or ``immutable=1`` when SQLite cannot even create the WAL index beside it)
and returns why. Card and PIN decisions then come from the in-memory caches loaded from it;
every write fails, so events stay in memory and management changes are refused loudly.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from pathlib import Path

import sqlite_utils

from gateway.errors import StorageError
from gateway.store import database as store
from gateway.store import schema

log = logging.getLogger(__name__)


def writable(path: Path) -> bool:
    """False when the database file or its folder cannot be written (read-only mount,
    permissions)."""
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return False
    except OSError:
        return False
    if path.exists() and not os.access(path, os.W_OK):
        return False
    return os.access(folder, os.W_OK)


def _read_only_conn(path: Path, *, immutable: bool, busy_timeout_ms: int) -> sqlite3.Connection:
    uri = f"file:{path.resolve()}?mode=ro" + ("&immutable=1" if immutable else "")
    conn = sqlite3.connect(
        uri, uri=True, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys = ON")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    if version != schema.SCHEMA_VERSION:
        conn.close()
        raise StorageError(
            f"state database {path} is read-only at schema {version}; this gateway needs "
            f"{schema.SCHEMA_VERSION} and cannot migrate it without write access"
        )
    return conn


def connect_read_only(path: Path | str, *, busy_timeout_ms: int = 1000) -> sqlite_utils.Database:
    """The state database opened read-only; StorageError when it cannot be read at all."""
    p = Path(path)
    if not p.is_file():
        raise StorageError(f"state database {p} does not exist and cannot be created (read-only)")
    last: Exception | None = None
    for immutable in (False, True):
        try:
            return sqlite_utils.Database(
                _read_only_conn(p, immutable=immutable, busy_timeout_ms=busy_timeout_ms)
            )
        except sqlite3.Error as exc:
            last = exc
    raise StorageError(f"cannot open state database {p} even read-only: {last}")


def open_state(
    path: Path | str, *, busy_timeout_ms: int = 1000
) -> tuple[sqlite_utils.Database, str | None]:
    """The state database and, when it could only be opened read-only, why (else None)."""
    p = Path(path)
    try:
        return store.connect(p, busy_timeout_ms=busy_timeout_ms), None
    except (StorageError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        if writable(p):
            raise
        first = exc
    db = connect_read_only(p, busy_timeout_ms=busy_timeout_ms)
    reason = f"state database is read-only ({type(first).__name__}: {first})"
    log.error(
        "DEGRADED: %s; valid cards and PINs open from memory, nothing can be changed and "
        "events are kept in memory only",
        reason,
    )
    return db, reason


def open_extra(path: Path | str, *, busy_timeout_ms: int, read_only: bool) -> sqlite_utils.Database:
    """Another connection to the state database (outbox, commands), read-only in DEGRADED
    mode: their writes then fail and they keep what they hold in memory."""
    if read_only:
        return connect_read_only(path, busy_timeout_ms=busy_timeout_ms)
    return store.connect(path, busy_timeout_ms=busy_timeout_ms)
