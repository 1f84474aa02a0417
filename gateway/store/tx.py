"""The one way to run a transaction on a connection in autocommit (``isolation_level=None``).

``with db.conn:`` does not BEGIN on such a connection, so every block that must be atomic, or
must read one consistent snapshot, goes through this module:

- :func:`transaction` writes: ``BEGIN IMMEDIATE`` (the write lock up front, so a busy
  database fails at BEGIN rather than half-way) ... ``COMMIT``, ``ROLLBACK`` on any error.
  It nests: an inner block joins the outer transaction, which commits. ``join=False`` is for
  a caller that acts on its own commit (it must be durable when the block ends): inside an
  open transaction its ``BEGIN`` fails instead of joining.
- :func:`snapshot` reads: ``BEGIN`` (deferred) ... ``COMMIT``, so several queries see the
  same moment; it joins an open transaction too.

Both take a :class:`sqlite_utils.Database` or a raw :class:`sqlite3.Connection` and yield
the raw connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import sqlite_utils

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
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (disk full, I/O)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


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
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")
