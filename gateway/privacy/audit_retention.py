"""Retention of the audit log that keeps the chain verifiable.

Rows are removed only as a prefix (the oldest ones), and only behind a keyed
``audit.checkpoint`` row appended first: it carries the seq and the link (``hash``) of the last
pruned row, so :func:`gateway.privacy.audit.verify` starts at the first kept row and proves
that exactly those rows were pruned, by this device, on purpose (an attacker without the
device key cannot write such a row; rows deleted without one are a break).

Two limits, from ``[retention]``:

* age: rows older than ``audit_days`` (at least ``processing_records_years``: the audit log
  is also the processing record);
* size: beyond ``audit_max_rows``, the oldest rows are pruned down to the limit, but never a
  processing record (consent, template, export...) younger than ``processing_records_years``:
  only the mass of security rows (rejected or failed commands, logins) ahead of it. When the
  limit cannot be met that way, :func:`prune` says so (``over_limit``) for an alert.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlite_utils

from gateway.privacy import audit
from gateway.privacy.tx import transaction

log = logging.getLogger(__name__)

#: Rows whose action starts with one of these are security noise, not processing records.
SECURITY_ACTIONS = ("command.rejected", "command.failed", "command.executed", "audit.")


@dataclass(frozen=True)
class AuditPruneReport:
    """What one audit prune removed; ``over_limit`` when rows still exceed the size limit."""

    pruned: int = 0
    pruned_to_seq: int = 0
    over_limit: bool = False


def _is_record(action: str) -> bool:
    return not action.startswith(SECURITY_ACTIONS)


def _prune_upto(
    db: sqlite_utils.Database, *, age_cutoff: float, record_cutoff: float, max_rows: int
) -> tuple[int, int]:
    """The last seq to prune (0: none) and the rows left after it."""
    conn = db.conn
    first, last = (
        int(v)
        for v in conn.execute(
            "SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM audit"
        ).fetchone()
    )
    young = conn.execute("SELECT min(seq) FROM audit WHERE ts >= ?", (age_cutoff,)).fetchone()[0]
    upto = last if young is None else int(young) - 1
    want = last - max_rows
    if want > upto:  # too many rows: prune further, up to the first young processing record
        stop = want
        for seq, ts, action in conn.execute(
            "SELECT seq, ts, action FROM audit WHERE seq > ? AND seq <= ? ORDER BY seq",
            (upto, want),
        ):
            if ts >= record_cutoff and _is_record(str(action)):
                stop = int(seq) - 1
                break
        upto = max(upto, stop)
    if upto < first:  # nothing before the first kept row
        upto = 0
    left = int(conn.execute("SELECT count(*) FROM audit WHERE seq > ?", (upto,)).fetchone()[0])
    return upto, left


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

    ``record_cutoff``: processing records newer than this are never pruned for size.
    The whole chain is verified first: a broken chain is never pruned (the evidence stays).
    """
    if audit.bound_key(db) is None:
        raise audit.AuditError("audit retention needs the device's audit chain key")
    if max_rows < 1:
        raise ValueError("audit_max_rows must be at least 1")
    res = audit.verify(db)
    if not res.ok:
        log.error("audit retention skipped: the chain is broken at seq %s", res.broken_seq)
        return AuditPruneReport(0, 0, over_limit=False)
    with transaction(db):
        upto, left = _prune_upto(
            db,
            age_cutoff=now - max_age_days * 86400.0,
            record_cutoff=record_cutoff,
            max_rows=max_rows,
        )
        if upto <= 0:
            return AuditPruneReport(0, 0, left > max_rows)
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
        db.conn.execute("DELETE FROM audit WHERE seq <= ?", (upto,))
    log.info("audit retention: %d rows up to seq %d pruned behind a checkpoint", n, upto)
    return AuditPruneReport(n, upto, left + 1 > max_rows)
