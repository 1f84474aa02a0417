"""Compliance and retention: the exact count of people with face data, the threshold watch
(80,000 warning, 100,000 filing deadline), the report, the inspection export, the retention
purge, the access-log purge, the audit chain check.

The rules and the report's content are :mod:`gateway.privacy.compliance`,
:mod:`gateway.privacy.retention` and :mod:`gateway.privacy.audit`; these are the operations
the CLI, the MQTT commands and the web console call.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from gateway.config.root import GatewayConfig
from gateway.face.protection import Mode
from gateway.privacy import audit, compliance, retention
from gateway.privacy.vault import GalleryLike, Vault
from gateway.store.kv import put_kv
from gateway.store.tx import transaction

log = logging.getLogger(__name__)

ALERTED_LEVEL_KEY = "compliance.alerted_level"
"""The last threshold level the watch saw (kv)."""
LEVELS = ("ok", "warning", "filing_required")


@dataclass(frozen=True)
class ReportRequest:
    """What the compliance report is computed from, besides the database."""

    gate: str
    today: dt.date
    thresholds: compliance.Thresholds
    retention: retention.RetentionPolicy
    gate_counts: dict[str, int] = field(default_factory=dict)
    cameras: Sequence[compliance.CameraRecord] = ()
    assessment_ref: str | None = None
    assessment_date: dt.date | None = None
    template_protection: Mode | None = None


def report(db: sqlite_utils.Database, request: ReportRequest) -> dict[str, Any]:
    """The compliance report (people counts, thresholds, filing deadline, records)."""
    return compliance.compliance_report(db, **vars(request))  # its fields are the parameters


def face_data_count(db: sqlite_utils.Database) -> int:
    """The exact number of people on record in ``db`` with face data (a face key): at the
    office, which holds every person of the compound, the compound-wide count."""
    return compliance.enrolled_count(db)


def thresholds_of(cfg: GatewayConfig) -> compliance.Thresholds:
    """The configured thresholds and extra non-working days (``[privacy]``)."""
    p = cfg.privacy
    return compliance.Thresholds(p.warn_people, p.filing_threshold, tuple(p.holidays))


@dataclass(frozen=True)
class Crossing:
    """A threshold newly crossed upwards (once per crossing): what the alert says."""

    level: str
    total: int
    deadline: dt.date | None
    deadline_error: str | None = None


def watch_thresholds(
    db: sqlite_utils.Database,
    total: int,
    thresholds: compliance.Thresholds,
    today: dt.date,
    *,
    actor: str = "compliance-watch",
) -> Crossing | None:
    """Compare ``total`` with the thresholds; the :class:`Crossing` when a higher level is
    reached than last time (remembered in ``kv``, so once per crossing, over restarts too;
    a fall below resets it, so a new crossing alerts again), else None. The filing
    threshold's first crossing starts the deadline (``compliance.threshold_status``). A
    crossing is audited as ``compliance.alert`` (level, count, deadline; no identity)."""
    with transaction(db):
        status = compliance.threshold_status(db, total, thresholds, today)
        level = str(status["level"])
        row = db.execute("SELECT value FROM kv WHERE key = ?", [ALERTED_LEVEL_KEY]).fetchone()
        before = str(row[0]) if row and row[0] in LEVELS else "ok"
        if level != before:
            put_kv(db, ALERTED_LEVEL_KEY, level)
        if LEVELS.index(level) <= LEVELS.index(before):
            return None
        due = status.get("filing_deadline") if level == "filing_required" else None
        error = status.get("filing_deadline_error") if level == "filing_required" else None
        details = {"level": level, "people_with_face_data": total, "filing_deadline": due}
        if error:
            details["deadline_error"] = error
        audit.append(db, actor, "compliance.alert", "compound", details)
    if error:
        log.error("compliance: filing required but the deadline is unknown: %s", error)
    log.warning("compliance: %d people with face data: level %s (was %s)", total, level, before)
    return Crossing(level, total, dt.date.fromisoformat(due) if due else None, error)


def filing_required(rep: dict[str, Any]) -> bool:
    """Whether the report says a filing is required."""
    return bool(rep["compound"]["level"] == "filing_required")


def export_records(db: sqlite_utils.Database, fmt: str, out: Path, *, actor: str) -> int:
    """Write the processing records (``json`` or ``csv``, 0600); audited; row count."""
    return compliance.export_records(db, fmt, out, actor=actor)


def retention_policy(cfg: GatewayConfig | None, **overrides: int) -> retention.RetentionPolicy:
    """The ``[retention]`` periods of ``cfg`` (built-in defaults without one), ``overrides`` on
    top; the policy's fields are named as the section's keys."""
    names = [f.name for f in dataclasses.fields(retention.RetentionPolicy)]
    configured = {n: getattr(cfg.retention, n) for n in names} if cfg is not None else {}
    return retention.RetentionPolicy(**(configured | overrides))


def run_retention_purge(
    db: sqlite_utils.Database,
    vault: Vault,
    gallery: GalleryLike,
    policy: retention.RetentionPolicy,
    *,
    clock: Callable[[], float] = time.time,
) -> retention.PurgeReport:
    """Run every retention job once (safe to repeat). Audited."""
    return retention.run_purge(db, vault, gallery, policy, clock())


def purge_access_log(db: sqlite_utils.Database, before: float, *, actor: str, channel: str) -> int:
    """Delete access-log rows older than ``before``; return how many. Audited as ``purge``."""
    with transaction(db):
        n = int(db.execute("DELETE FROM access_log WHERE ts < ?", [before]).rowcount)
        audit.append(
            db, actor, "purge", "access_log", {"deleted": n, "before": before, "channel": channel}
        )
    log.info("%d access-log rows purged via %s", n, channel)
    return n


def verify_audit(db: sqlite_utils.Database) -> audit.VerifyResult:
    """Check the audit hash chain (and its MACs where the key is bound)."""
    return audit.verify(db)
