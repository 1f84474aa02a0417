"""Physical erasure after a crypto-erase: nothing recoverable in the database, WAL or -shm.

``PRAGMA secure_delete = ON`` (set by :func:`gateway.store.database.connect`) makes SQLite overwrite
deleted cells and freed pages with zeros. In WAL mode those zeroed page images first go to
the WAL; the old images (with the wrapped key and the ciphertexts) stay in the main file and
in older WAL frames until a checkpoint copies the new images back and the WAL is truncated.

A reader of another connection that holds a read transaction pins its snapshot, so the
checkpoint cannot complete while it lasts (that reader can still legitimately read the old
rows). Waiting for it with the usual busy timeout blocked a withdrawal for 5 s (daemon) or
25 s (CLI, five retries) and with it every database call of the gate. Here:

* the erase transaction also sets ``kv['privacy.scrub_pending']``;
* :func:`checkpoint_truncate` retries ``wal_checkpoint(TRUNCATE)`` with a zero busy timeout
  (a busy reader returns at once, holding no lock that would stall the gate's writers) until
  a deadline;
* :func:`complete_pending` runs that and clears the flag once the WAL is empty; the daemon
  runs it on a connection of its own in a worker thread (never on the database thread that
  card/PIN decisions use), right after the withdrawal and then periodically, so the bytes
  are gone within a tick of the last old reader finishing.

No VACUUM: with ``secure_delete`` on it adds nothing to the erasure, and it rewrites the whole
database through the WAL under the write lock (hundreds of ms to seconds on an SD card).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlite_utils

from gateway.store.kv import put_kv

log = logging.getLogger(__name__)

PENDING_KEY = "privacy.scrub_pending"
RETRY_S = 0.02


def mark_pending(db: sqlite_utils.Database, now: float) -> None:
    """Record (inside the erase transaction) that erased pages still wait for a checkpoint."""
    put_kv(db, PENDING_KEY, repr(float(now)))


def is_pending(conn: sqlite3.Connection) -> bool:
    """Whether an erase still waits for its WAL to be checkpointed and truncated."""
    row = conn.execute("SELECT 1 FROM kv WHERE key = ?", (PENDING_KEY,)).fetchone()
    return row is not None


def checkpoint_truncate(conn: sqlite3.Connection, wait_s: float) -> bool:
    """Checkpoint every WAL frame into the database and truncate the WAL to 0 bytes.

    Retries with a zero busy timeout until ``wait_s`` has passed; True once done (also for a
    database that is not in WAL mode). Never waits inside SQLite's busy handler.
    """
    if conn.in_transaction:
        return False
    deadline = time.monotonic() + max(0.0, wait_s)
    old = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.OperationalError as exc:  # locked: same as busy
                log.debug("checkpoint busy: %s", exc)
                row = (1, -1, -1)
            if row is None or int(row[0]) == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(RETRY_S)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {old}")


def complete_pending(conn: sqlite3.Connection, wait_s: float) -> bool:
    """Finish a pending scrub: checkpoint+truncate, clear the flag, truncate again.

    True when nothing is pending any more. Safe to call from any connection and process.
    """
    try:
        if not is_pending(conn):
            return True
        if not checkpoint_truncate(conn, wait_s):
            return False
        conn.execute("DELETE FROM kv WHERE key = ?", (PENDING_KEY,))
        checkpoint_truncate(conn, 0.0)  # the flag's own frame: nothing secret, best effort
    except sqlite3.Error as exc:
        log.warning("erased pages not yet scrubbed from the WAL: %s", exc)
        return False
    log.info("erased face data scrubbed: database checkpointed, WAL truncated")
    return True


def scrub_file(path: Path | str, *, budget_s: float, max_pause_s: float = 0.4) -> bool:
    """Complete a pending scrub on a connection of our own, trying for up to ``budget_s``.

    For worker threads: never touches the gate's database connection or thread. Tries are
    spaced out (doubling pauses up to ``max_pause_s``), so a long reader costs the gate's
    writers nothing but a rare, brief checkpoint attempt.
    """
    if str(path) == ":memory:":
        return True
    deadline = time.monotonic() + budget_s
    try:
        conn = sqlite3.connect(str(path), timeout=0.0, isolation_level=None)
    except sqlite3.Error as exc:
        log.warning("scrub: cannot open %s: %s", path, exc)
        return False
    try:
        conn.execute("PRAGMA secure_delete = ON")
        pause = RETRY_S
        while True:
            if complete_pending(conn, 0.0):
                return True
            if time.monotonic() + pause >= deadline:
                log.warning(
                    "scrub: a reader still holds an old snapshot; erased pages leave the "
                    "WAL at the next try"
                )
                return False
            time.sleep(pause)
            pause = min(max_pause_s, pause * 2)
    finally:
        conn.close()


async def scrub_in_background(path: Path | str, *, budget_s: float = 600.0) -> bool:
    """:func:`scrub_file` in a daemon thread (the event loop and the database thread go on;
    a pending scrub never delays the daemon's shutdown)."""
    import threading

    loop = asyncio.get_running_loop()
    done: asyncio.Future[bool] = loop.create_future()

    def run() -> None:
        try:
            ok = scrub_file(path, budget_s=budget_s)
        except Exception as exc:  # noqa: BLE001 - reported through the future
            _deliver(loop, _set_exception, done, exc)
        else:
            _deliver(loop, _set_result, done, ok)

    threading.Thread(target=run, name="wal-scrub", daemon=True).start()
    return await done


def _deliver(loop: asyncio.AbstractEventLoop, fn: Any, fut: Any, value: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, fut, value)
    except RuntimeError:  # the loop is closed (shutdown): nobody waits for the result
        log.debug("scrub finished after the event loop closed")


def _set_result(fut: asyncio.Future[bool], ok: bool) -> None:
    if not fut.done():
        fut.set_result(ok)


def _set_exception(fut: asyncio.Future[bool], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
