"""The one way to run a transaction on a connection in autocommit (``isolation_level=None``).

``with db.conn:`` does not BEGIN on such a connection, so every block that must be atomic, or
must read one consistent snapshot, goes through this module:

- :func:`transaction` writes: ``BEGIN IMMEDIATE`` (the write lock up front, so a busy
  database fails at BEGIN rather than half-way) ... ``COMMIT``, ``ROLLBACK`` on any error
  (a failed ``COMMIT`` included: the connection is never left inside a transaction).
  It nests: an inner block joins the outer transaction, which commits. ``join=False`` is for
  a caller that acts on its own commit (it must be durable when the block ends): inside an
  open transaction its ``BEGIN`` fails instead of joining.
- :func:`snapshot` reads: ``BEGIN`` (deferred) ... ``COMMIT``, so several queries see the
  same moment; it joins an open transaction too.

Both take a :class:`sqlite_utils.Database` or a raw :class:`sqlite3.Connection` and yield
the raw connection.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import sqlite_utils

log = logging.getLogger(__name__)

Connectable = sqlite_utils.Database | sqlite3.Connection


def _raw(db: Connectable) -> sqlite3.Connection:
    return db if isinstance(db, sqlite3.Connection) else db.conn


@contextmanager
def transaction(db: Connectable, *, join: bool = True) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error); joins an open transaction
    unless ``join`` is False."""
    conn = _raw(db)
    if join and conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


@contextmanager
def snapshot(db: Connectable) -> Iterator[sqlite3.Connection]:
    """``BEGIN`` ... ``COMMIT`` around reads that must see one moment; joins an open
    transaction (whose own snapshot they then share)."""
    conn = _raw(db)
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
        if conn.in_transaction:
            conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    """End a failed transaction, also when its ``COMMIT`` failed: a transaction left open
    would be joined by every later block (writes never committed, the write lock held)."""
    if not conn.in_transaction:  # SQLite may have rolled back already (disk full, I/O)
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        log.exception("ROLLBACK failed after an error in a transaction")
