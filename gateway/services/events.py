"""What the console shows of the gate's activity: today's access counts and the recent
decisions from the local access log, the events still in the outbox, and the audited
look-up of an event's pseudonym (PIPL: who looked whom up is on record)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from gateway.errors import PrivacyError
from gateway.privacy import access_log, audit
from gateway.privacy.people import Person, get_person
from gateway.store.tx import transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TodayCounts:
    """Access decisions since local midnight."""

    granted: int
    denied: int


def today_counts(db: sqlite_utils.Database, now: float | None = None) -> TodayCounts:
    """Granted and denied decisions in the access log since local midnight."""
    now = time.time() if now is None else now
    day = dt.datetime.fromtimestamp(now).astimezone()
    midnight = day.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    rows = db.execute(
        "SELECT granted, count(*) FROM access_log WHERE ts >= ? GROUP BY granted", [midnight]
    ).fetchall()
    counts = {bool(g): int(n) for g, n in rows}
    return TodayCounts(granted=counts.get(True, 0), denied=counts.get(False, 0))


@dataclass(frozen=True)
class StoredAccess:
    """An access decision as the local access log keeps it; the person only as the
    pseudonym the caller's function gave (None: nobody, or nobody on record any more)."""

    ts: float
    door: str
    method: str
    granted: bool
    reason: str
    person: str | None


def stored_access(
    db: sqlite_utils.Database,
    pseudonym: Callable[[str, float], str | None],
    *,
    before: float,
    limit: int,
    door: str = "",
    granted: bool | None = None,
    since: float | None = None,
) -> list[StoredAccess]:
    """The latest ``limit`` access-log rows before ``before``, newest first (``door``,
    ``granted`` and ``since`` narrow them); each person as ``pseudonym(id, ts)``, so no
    identity leaves this function."""
    sql = "SELECT ts, door, method, granted, reason, subject FROM access_log WHERE ts < ?"
    args: list[Any] = [before]
    if door:
        sql, args = sql + " AND door = ?", [*args, door]
    if granted is not None:
        sql, args = sql + " AND granted = ?", [*args, int(granted)]
    if since is not None:
        sql, args = sql + " AND ts >= ?", [*args, since]
    rows = db.execute(sql + " ORDER BY ts DESC, id DESC LIMIT ?", [*args, limit]).fetchall()
    people = access_log.people_by_subject(db) if any(r[5] for r in rows) else {}
    out = []
    for ts, door_, method, ok, reason, subject in rows:
        pid = people.get(subject) if subject else None
        who = None if pid is None else pseudonym(pid, float(ts))
        out.append(StoredAccess(float(ts), str(door_), str(method), bool(ok), str(reason), who))
    return out


def pending_publications(
    db: sqlite_utils.Database, *, before: float, limit: int
) -> list[tuple[str, bytes]]:
    """The outbox's latest ``limit`` publications queued before ``before`` and not yet
    acknowledged by the broker, newest first: ``(topic, payload)`` as they will be sent."""
    rows = db.execute(
        "SELECT topic, payload FROM outbox WHERE created_at < ? ORDER BY seq DESC LIMIT ?",
        [before, limit],
    ).fetchall()
    return [(str(t), bytes(p)) for t, p in rows]


def resolve_pseudonym(
    db: sqlite_utils.Database,
    find: Callable[[list[str]], str | None],
    *,
    actor: str,
    reason: str,
    epoch: int,
) -> Person | None:
    """The person ``find`` picks among everyone on record by their pseudonym in ``epoch``
    (the epoch of the event looked at), or None; audited as ``pseudonym.resolve`` (found
    or not) with ``actor`` and the ``reason`` given."""
    if not reason.strip():
        raise PrivacyError("say why you look this person up (the reason is audited)")
    ids = [str(r[0]) for r in db.execute("SELECT id FROM people").fetchall()]
    pid = find(ids)
    with transaction(db):
        audit.append(
            db,
            actor,
            "pseudonym.resolve",
            pid or "-",
            {"found": pid is not None, "epoch": epoch, "reason": reason.strip()},
        )
    log.info("pseudonym look-up by %s: %s", actor, "found" if pid else "no match")
    return get_person(db, pid) if pid is not None else None
