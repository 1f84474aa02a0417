"""The local access log, pseudonymised: a keyed hash of the person, never the stable id.

``access_log.subject`` is HMAC-SHA256(person id) under a key derived from the device key
(truncated to 128 bits): stable, so that an investigation holding the device key can ask
"when did this person pass?" (:func:`subject_of` of the id, then a lookup), but the log alone
names nobody and cannot be joined with another gate's log or an event stream. Rows written by
earlier versions (``person_id``) are pseudonymised by the retention job (:func:`pseudonymise`).
Without a bound key no person reference is stored at all (fail private).
"""

from __future__ import annotations

import hashlib
import hmac
import logging

import sqlite_utils

from gateway.privacy.audit import PerDatabase

log = logging.getLogger(__name__)

_keys: PerDatabase[bytes] = PerDatabase()


def key_from_device(device_root: bytes) -> bytes:
    """The access-log pseudonym key of a device (HKDF subkey of its root key)."""
    from gateway.keys import Purpose, subkey_of

    return subkey_of(device_root, Purpose.ACCESS_LOG)


def bind_key(db: sqlite_utils.Database, key: bytes | None) -> None:
    """Use ``key`` for every access-log write to this database file in this process."""
    _keys.bind(db, key)


def subject_of(key: bytes, person_id: str) -> str:
    """The access-log pseudonym of ``person_id`` (32 hex characters)."""
    return hmac.new(key, b"person:" + person_id.encode(), hashlib.sha256).hexdigest()[:32]


def record(
    db: sqlite_utils.Database,
    *,
    ts: float,
    door: str,
    method: str,
    granted: bool,
    reason: str,
    person_id: str | None,
) -> None:
    """Append one access-log row; the person only as a keyed pseudonym."""
    key = _keys.get(db)
    subject = None if person_id is None or key is None else subject_of(key, person_id)
    db.execute(
        "INSERT INTO access_log (ts, door, method, granted, reason, person_id, subject)"
        " VALUES (?, ?, ?, ?, ?, NULL, ?)",
        [ts, door, method, int(granted), reason, subject],
    )


def people_by_subject(db: sqlite_utils.Database) -> dict[str, str]:
    """Each person on record by their access-log pseudonym (empty without a bound key):
    for showing a stored row as the event it was, under the event's own pseudonym."""
    key = _keys.get(db)
    if key is None:
        return {}
    ids = [str(r[0]) for r in db.execute("SELECT id FROM people").fetchall()]
    return {subject_of(key, pid): pid for pid in ids}


def pseudonymise(db: sqlite_utils.Database) -> int:
    """Replace the person id of older rows by their pseudonym; the number of rows changed."""
    key = _keys.get(db)
    if key is None:
        return 0
    rows = db.execute(
        "SELECT DISTINCT person_id FROM access_log WHERE person_id IS NOT NULL"
    ).fetchall()
    n = 0
    for (pid,) in rows:
        n += db.execute(
            "UPDATE access_log SET subject = ?, person_id = NULL WHERE person_id = ?",
            [subject_of(key, str(pid)), pid],
        ).rowcount
    if n:
        log.info("access log: %d rows pseudonymised", n)
    return n


def rekey(db: sqlite_utils.Database, old: bytes, new: bytes) -> int:
    """Move every row's subject from key ``old`` to ``new`` (an access-log key rotation,
    inside its transaction). Subjects of people no longer on record are re-hashed under
    ``new`` too (still one subject per person, no longer linkable to the old log). Returns
    the rows changed."""
    known = {
        subject_of(old, str(pid)): subject_of(new, str(pid))
        for (pid,) in db.execute("SELECT id FROM people").fetchall()
    }
    n = 0
    for (subject,) in db.execute(
        "SELECT DISTINCT subject FROM access_log WHERE subject IS NOT NULL"
    ).fetchall():
        moved = known.get(subject) or subject_of(new, "orphan:" + str(subject))
        n += db.execute(
            "UPDATE access_log SET subject = ? WHERE subject = ?", [moved, subject]
        ).rowcount
    return n
