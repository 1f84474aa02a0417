"""The dashboard's roster section (issue 15's convergence, no identity).

On an office: per gate, the version it applied (acknowledged), how many changes and for
how long it is behind, its last acknowledgement, and the erasures and revocations it has
not acknowledged yet with their age, those older than ``[roster] erasure_ack_s`` marked
overdue (``services.roster_publish``). On a gate: the version applied here
(``services.roster_gate``). Off: nothing to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlite_utils

from gateway.services import roster_gate, roster_publish
from gateway.web.backend import Backend, RosterRole


def _age(now: float, since: float | None) -> int | None:
    return None if since is None else max(0, round(now - since))


def office_view(
    status: roster_publish.RosterStatus,
    pending: Sequence[roster_publish.PendingErasure],
    *,
    alert_after_s: float,
    now: float,
) -> dict[str, Any]:
    """The office's view model: each gate's convergence and its unacknowledged erasures
    (``overdue`` when older than ``alert_after_s``); totals for the whole site."""
    gates: list[dict[str, Any]] = []
    pending_total = overdue_total = 0
    for g in status.gates:
        mine = [
            {
                "change": p.change_id,
                "version": p.version,
                "created_at": p.created_at,
                "age_s": _age(now, p.created_at),
                "overdue": now - p.created_at >= alert_after_s,
            }
            for p in pending
            if p.gate == g.gate and p.version > g.acked
        ]
        overdue = sum(1 for p in mine if p["overdue"])
        pending_total, overdue_total = pending_total + len(mine), overdue_total + overdue
        behind_since = g.behind_since if g.behind else None
        gates.append(
            {
                "gate": g.gate,
                "version": g.version,
                "applied": g.acked,
                "behind": g.behind,
                "behind_since": behind_since,
                "behind_for_s": _age(now, behind_since),
                "last_ack": g.last_ack,
                "error": g.error,
                "pending": mine,
                "overdue": overdue,
            }
        )
    return {
        "role": "office",
        "alert_after_s": alert_after_s,
        "gates": gates,
        "behind": sum(1 for g in gates if g["behind"]),
        "pending": pending_total,
        "overdue": overdue_total,
        "alerts": status.alerts,
    }


def gate_view(gate: str, version: int, applied_at: float | None) -> dict[str, Any]:
    """A gate's view model: the office's roster version applied here, and when."""
    return {"role": "gate", "gate": gate, "applied": version, "applied_at": applied_at}


def _read(db: sqlite_utils.Database, role: RosterRole, now: float) -> dict[str, Any]:
    if role.role == "office":
        status = roster_publish.status(db, role.site, recent=0)
        pending = roster_publish.pending_erasures(db)
        return office_view(status, pending, alert_after_s=role.alert_after_s, now=now)
    if role.role == "gate":
        return gate_view(role.gate, *roster_gate.applied(db))
    return {"role": "off"}


async def roster(backend: Backend, now: float) -> dict[str, Any]:
    """The roster section of the dashboard for this instance's role."""
    if backend.roster.role not in ("office", "gate"):
        return {"role": "off"}
    return dict(await backend.run_db(_read, backend.db, backend.roster, now))
