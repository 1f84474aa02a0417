"""Retention of the audit log that keeps the chain verifiable.

Rows are removed only as a prefix (the oldest ones), and only behind a keyed
``audit.checkpoint`` row appended first: it carries the seq and the link (``hash``) of the last
pruned row, so :func:`gateway.privacy.audit.verify` starts at the first kept row and proves
that exactly those rows were pruned, by this device, on purpose (an attacker without the
device key cannot write such a row; rows deleted without one are a break).

Two limits, from ``[retention]``:

* age: rows older than ``audit_days`` (at least ``processing_records_years``: the audit log
  is also the processing record);
* size: beyond ``audit_max_rows``, the oldest rows are pruned down to the limit; a processing
  record (consent, template, person, export...) younger than ``processing_records_years`` in
  that prefix is never lost: it is first carried forward, re-appended under the chain key with
  its original time, actor, action, subject and details, and its original seq and link
  (``carried_from``). So a flood of rejected commands is shed, the records stay. When the
  limit still cannot be met, :func:`prune` says so (``over_limit``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from gateway.privacy import audit
from gateway.store.tx import transaction

log = logging.getLogger(__name__)

#: Rows whose action starts with one of these are security noise, not processing records.
SECURITY_ACTIONS = ("command.rejected", "command.failed", "command.executed", "audit.")


@dataclass(frozen=True)
class AuditPruneReport:
    """What one audit prune removed; ``over_limit`` when rows still exceed the size limit."""

    pruned: int = 0
    pruned_to_seq: int = 0
    over_limit: bool = False
    carried: int = 0


def _is_record(action: str) -> bool:
    return not action.startswith(SECURITY_ACTIONS)


def _prune_plan(
    db: sqlite_utils.Database, *, age_cutoff: float, record_cutoff: float, max_rows: int
) -> tuple[int, list[tuple[Any, ...]]]:
    """The last seq to prune (0: none) and the young processing records inside that prefix,
    which are carried forward (re-appended verbatim, with their original seq and link)."""
    conn = db.conn
    first, last = (
        int(v)
        for v in conn.execute(
            "SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM audit"
        ).fetchone()
    )
    young = conn.execute("SELECT min(seq) FROM audit WHERE ts >= ?", (age_cutoff,)).fetchone()[0]
    upto = last if young is None else int(young) - 1
    carry: list[tuple[Any, ...]] = []
    want = last - max_rows
    if want > upto:  # too many rows: prune further, carrying the young records forward
        for row in conn.execute(
            "SELECT seq, ts, actor, action, subject, details, hash FROM audit"
            " WHERE seq > ? AND seq <= ? AND ts >= ? ORDER BY seq",
            (upto, want, record_cutoff),
        ):
            if _is_record(str(row[3])):
                carry.append(tuple(row))
        upto = want
    if upto < first:  # nothing before the first kept row
        return 0, []
    return upto, carry


def _carry(db: sqlite_utils.Database, row: tuple[Any, ...]) -> None:
    seq, ts, actor, action, subject, details, link = row
    audit.append(
        db,
        str(actor),
        str(action),
        str(subject),
        {"carried_from": {"seq": int(seq), "hash": str(link)}, "details": json.loads(details)},
        now=float(ts),
    )


def prune(
    db: sqlite_utils.Database,
    *,
    now: float,
    max_age_days: float,
    max_rows: int,
    record_cutoff: float,
    actor: str = "system:retention",
) -> AuditPruneReport:
    """Prune old audit rows behind a checkpoint row; needs the chain key to be bound.

    ``record_cutoff``: processing records newer than this are carried forward, never lost.
    The rows to prune are verified first: tampered rows are never pruned (the evidence stays).
    """
    if audit.bound_key(db) is None:
        raise audit.AuditError("audit retention needs the device's audit chain key")
    if max_rows < 1:
        raise ValueError("audit_max_rows must be at least 1")
    with transaction(db):
        upto, carry = _prune_plan(
            db,
            age_cutoff=now - max_age_days * 86400.0,
            record_cutoff=record_cutoff,
            max_rows=max_rows,
        )
        if upto <= 0:
            total = int(db.conn.execute("SELECT count(*) FROM audit").fetchone()[0])
            return AuditPruneReport(0, 0, total > max_rows)
        res = audit.verify(db, upto=upto)  # never prune away rows that do not verify
        if not res.ok:
            log.error("audit retention skipped: the chain is broken at seq %s", res.broken_seq)
            return AuditPruneReport(0, 0, over_limit=False)
        row = db.conn.execute("SELECT hash, ts FROM audit WHERE seq = ?", (upto,)).fetchone()
        first = db.conn.execute("SELECT min(seq) FROM audit").fetchone()[0]
        n = upto - int(first) + 1
        audit.append(
            db,
            actor,
            audit.CHECKPOINT_ACTION,
            "audit",
            {
                "pruned_to_seq": upto,
                "pruned_head": str(row[0]),
                "pruned_rows": n,
                "pruned_until_ts": float(row[1]),
            },
            now=now,
        )
        for row in carry:
            _carry(db, row)
        db.conn.execute("DELETE FROM audit WHERE seq <= ?", (upto,))
        left = int(db.conn.execute("SELECT count(*) FROM audit").fetchone()[0])
    log.info(
        "audit retention: %d rows up to seq %d pruned behind a checkpoint, %d records carried",
        n,
        upto,
        len(carry),
    )
    return AuditPruneReport(n, upto, left > max_rows, len(carry))
