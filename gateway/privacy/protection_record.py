"""Which template protection mode the stored templates were made under.

Recorded in ``kv['privacy.template_protection']`` by every enrolment (the first one writes
it). A database enrolled before the record is read from the stored width: AES-GCM of
``dim`` float32 values (orthogonal: the 128-d rotation; cancelable: 256 sign values). A gate
whose configured mode differs from the stored templates' refuses to start (``gateway
doctor`` FAILs) instead of skipping every template at the gallery load.
"""

from __future__ import annotations

import sqlite3

from gateway.errors import ConfigError
from gateway.face.protection import CANCELABLE_BITS, MODES, Mode
from gateway.store.kv import put_kv

MODE_KV = "privacy.template_protection"
_GCM_TAG = 16
_BY_WIDTH: dict[int, Mode] = {
    128 * 4 + _GCM_TAG: "orthogonal",
    CANCELABLE_BITS * 4 + _GCM_TAG: "cancelable",
}


def template_count(conn: sqlite3.Connection) -> int:
    """How many templates are stored (0 when the database has no templates table yet)."""
    try:
        return int(conn.execute("SELECT count(*) FROM templates").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def stored_mode(conn: sqlite3.Connection) -> Mode | None:
    """The mode recorded at enrolment, else the stored templates' (by width); None when
    nothing tells."""
    try:
        row = conn.execute("SELECT value FROM kv WHERE key = ?", (MODE_KV,)).fetchone()
    except sqlite3.OperationalError:
        return None
    if row is not None and row[0] in MODES:
        return row[0]  # type: ignore[no-any-return]
    width = conn.execute("SELECT length(ciphertext) FROM templates LIMIT 1").fetchone()
    return None if width is None else _BY_WIDTH.get(int(width[0]))


def mismatch(conn: sqlite3.Connection, configured: Mode) -> str | None:
    """What is wrong when stored templates were made under another mode than ``configured``
    (and what to do), else None."""
    count = template_count(conn)
    stored = stored_mode(conn)
    if count == 0 or stored is None or stored == configured:
        return None
    return (
        f"{count} stored templates were made under [privacy] template_protection = "
        f"'{stored}' but the configuration says '{configured}': they cannot be matched "
        f"(or moved) under it. Set template_protection = '{stored}' again, or re-enrol "
        f"every face under '{configured}': 'gateway keys erase-templates --yes' (with "
        f"'{stored}' still configured), switch the mode, enrol again"
    )


def record(conn: sqlite3.Connection, mode: Mode) -> None:
    """Record ``mode`` as the stored templates' (inside the enrolment's transaction)."""
    put_kv(conn, MODE_KV, mode)


def check(conn: sqlite3.Connection, configured: Mode) -> None:
    """ConfigError naming ``privacy.template_protection`` on a :func:`mismatch`."""
    if problem := mismatch(conn, configured):
        raise ConfigError([("privacy.template_protection", configured, problem)])
