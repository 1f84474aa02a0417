"""Compliance and retention: the report, the inspection export, the retention purge, the
access-log purge, the audit chain check.

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
from gateway.privacy import audit, compliance, retention
from gateway.privacy.vault import GalleryLike, Vault
from gateway.store.tx import transaction

log = logging.getLogger(__name__)


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


def report(db: sqlite_utils.Database, request: ReportRequest) -> dict[str, Any]:
    """The compliance report (people counts, thresholds, filing deadline, records)."""
    return compliance.compliance_report(db, **vars(request))  # its fields are the parameters


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
