"""Explicit transactions on the shared connection (``isolation_level=None`` autocommit).

``with db.conn:`` does not BEGIN on such a connection, so privacy writes that must be atomic
use :func:`transaction`, which nests (an inner block joins the outer transaction).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlite_utils


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error); joins an open transaction."""
    conn = db.conn
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
