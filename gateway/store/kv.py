"""The ``kv`` table's one write: a value set (inserted or replaced) under its key."""

from __future__ import annotations

from gateway.store.tx import Connectable, _raw


def put_kv(db: Connectable, key: str, value: str) -> None:
    """Set ``kv[key] = value`` (joins the caller's transaction, if any)."""
    _raw(db).execute(
        "INSERT INTO kv (key, value) VALUES (?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
