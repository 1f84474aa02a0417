"""Compliance: people-count thresholds, filing deadline, and records for an inspection.

The filing threshold (100,000 people with face data across the compound) starts a deadline
of 30 working days counted from the first day the threshold was seen crossed (by the daemon's
watch or a report; remembered in ``kv``). Working days follow China's official calendar from
the ``chinese-calendar`` package: its public holidays are off and its make-up working days
(调休, a Saturday or Sunday worked) count; ``privacy.holidays`` adds local closures. A date
beyond the years the installed package covers raises :class:`CalendarError` (the deadline
is reported as unknown, loudly, never guessed from weekdays). A warning is raised from 80,000.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from gateway.errors import PrivacyError
from gateway.face.protection import Mode
from gateway.privacy import audit, protection_record
from gateway.privacy.consent import (
    current_notice_version,
    guardian_consent_lapsed,
    renotice_pending,
)
from gateway.privacy.people import face_only_people
from gateway.privacy.retention import RetentionPolicy
from gateway.privacy.zones import check_camera_allowed

CROSSED_KEY = "privacy.filing.crossed_on"
FILING_WORKING_DAYS = 30


@dataclass(frozen=True)
class CameraRecord:
    """A camera's placement record for the report."""

    name: str
    space: str
    signage_installed: bool
    signage_recorded: str = ""


@dataclass(frozen=True)
class Thresholds:
    """People-count thresholds (compound-wide)."""

    warn_people: int = 80_000
    filing_threshold: int = 100_000
    holidays: tuple[dt.date, ...] = field(default_factory=tuple)


class CalendarError(PrivacyError):
    """A working day cannot be told: the date is beyond the official calendar installed."""


def calendar_name() -> str:
    """The official calendar used, with its version (for reports)."""
    from importlib.metadata import version

    return f"chinese-calendar {version('chinese-calendar')}"


def is_working_day(day: dt.date, extra_off: Iterable[dt.date] = ()) -> bool:
    """Whether ``day`` is a working day in mainland China (official holidays off, make-up
    working days on), not one of ``extra_off``; :class:`CalendarError` beyond the package."""
    import chinese_calendar

    if day in set(extra_off):
        return False
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError as exc:
        raise CalendarError(
            f"{day.isoformat()} is beyond the years {calendar_name()} covers (its official "
            "holidays and make-up working days are not known yet): upgrade the package"
        ) from exc


def working_days_after(start: dt.date, n: int, holidays: Iterable[dt.date] = ()) -> dt.date:
    """The ``n``-th working day after ``start`` (start excluded; :func:`is_working_day`,
    ``holidays`` as extra days off); :class:`CalendarError` when the count runs past the
    calendar's years."""
    off = set(holidays)
    day = start
    left = n
    while left > 0:
        day += dt.timedelta(days=1)
        if is_working_day(day, off):
            left -= 1
    return day


def enrolled_count(db: sqlite_utils.Database) -> int:
    """People on record with face data stored here (exact: one key per person)."""
    return int(
        db.execute(
            "SELECT count(*) FROM people p WHERE EXISTS"
            " (SELECT 1 FROM face_keys f WHERE f.person_id = p.id)"
        ).fetchone()[0]
    )


def level_of(total: int, thresholds: Thresholds) -> str:
    """``ok``, ``warning`` or ``filing_required`` for ``total`` people with face data."""
    if total >= thresholds.filing_threshold:
        return "filing_required"
    if total >= thresholds.warn_people:
        return "warning"
    return "ok"


def threshold_status(
    db: sqlite_utils.Database,
    total: int,
    thresholds: Thresholds,
    today: dt.date,
) -> dict[str, Any]:
    """Level (ok / warning / filing_required) and, once crossed, the filing deadline."""
    row = db.execute("SELECT value FROM kv WHERE key = ?", [CROSSED_KEY]).fetchone()
    crossed = dt.date.fromisoformat(row[0]) if row else None
    if total >= thresholds.filing_threshold and crossed is None:
        crossed = today
        db.execute("INSERT INTO kv (key, value) VALUES (?, ?)", [CROSSED_KEY, today.isoformat()])
    level = level_of(total, thresholds)
    out: dict[str, Any] = {"level": level, "total": total}
    if crossed is not None:
        out["filing_threshold_crossed_on"] = crossed.isoformat()
        out["calendar"] = calendar_name()
        try:
            deadline = working_days_after(crossed, FILING_WORKING_DAYS, thresholds.holidays)
            out["filing_deadline"] = deadline.isoformat()
        except CalendarError as exc:
            out["filing_deadline"] = None
            out["filing_deadline_error"] = str(exc)
    if level == "warning":
        out["message"] = (
            f"WARNING: {total} people stored across the compound; filing with the authority "
            f"is required from {thresholds.filing_threshold}"
        )
    elif level == "filing_required":
        due = out["filing_deadline"] or "an UNKNOWN date (" + out["filing_deadline_error"] + ")"
        out["message"] = (
            f"FILING REQUIRED: {total} people stored (>= {thresholds.filing_threshold}); file "
            f"with the cyberspace authority by {due} "
            f"({FILING_WORKING_DAYS} working days, {out['calendar']})"
        )
    return out


def compliance_report(
    db: sqlite_utils.Database,
    *,
    gate: str,
    today: dt.date,
    thresholds: Thresholds = Thresholds(),
    gate_counts: Mapping[str, int] | None = None,
    cameras: Sequence[CameraRecord] = (),
    assessment_ref: str | None = None,
    assessment_date: dt.date | None = None,
    retention: RetentionPolicy | None = None,
    template_protection: Mode | None = None,
) -> dict[str, Any]:
    """Build the report dict (JSON-serialisable); ``template_protection``: the configured
    mode (None: the stored templates' only)."""
    local = enrolled_count(db)
    others = {g: int(c) for g, c in (gate_counts or {}).items() if g != gate}
    if any(c < 0 for c in others.values()):
        raise PrivacyError("gate counts must not be negative")
    total = local + sum(others.values())
    statuses = dict(
        db.execute(
            "SELECT c.status, count(*) FROM consents c WHERE c.id ="
            " (SELECT max(id) FROM consents WHERE person_id = c.person_id) GROUP BY c.status"
        ).fetchall()
    )
    return {
        "gate": gate,
        "date": today.isoformat(),
        "people_on_record": int(db.execute("SELECT count(*) FROM people").fetchone()[0]),
        "enrolled_this_gate": local,
        "enrolled_other_gates": others,
        "thresholds": {
            "warn_people": thresholds.warn_people,
            "filing_threshold": thresholds.filing_threshold,
        },
        "compound": threshold_status(db, total, thresholds, today),
        "consent": {
            "notice_version": current_notice_version(db),
            "current_status_counts": statuses,
            "renotice_pending": len(renotice_pending(db)),
            # turned 14: face use suspended until the person's own consent is recorded
            "guardian_consent_lapsed": guardian_consent_lapsed(db, _end_of(today)),
        },
        "face_only_people": len(face_only_people(db)),
        "impact_assessment": {
            "reference": assessment_ref,
            "date": assessment_date.isoformat() if assessment_date else None,
        },
        "cameras": [
            {
                **asdict(c),
                "problems": check_camera_allowed(
                    c.space, c.signage_installed, assessment_ref, assessment_date, today=today
                ),
            }
            for c in cameras
        ],
        "retention": asdict(retention) if retention else None,
        "audit_rows": int(db.execute("SELECT count(*) FROM audit").fetchone()[0]),
        "key_rotations": key_rotations(db),
        "template_protection": protection_in_use(db, template_protection),
    }


def protection_in_use(db: sqlite_utils.Database, configured: Mode | None) -> dict[str, Any]:
    """The configured template protection mode, the stored templates' and any mismatch."""
    conn = db.conn
    stored = protection_record.stored_mode(conn)
    return {
        "configured": configured,
        "stored": stored,
        "templates": protection_record.template_count(conn),
        "problem": protection_record.mismatch(conn, configured) if configured else None,
    }


def key_rotations(db: sqlite_utils.Database) -> dict[str, dict[str, Any]]:
    """The last ``keys.rotate`` of each key (from the audit log): when, by whom, how many
    templates followed, and the key fingerprints (never key material)."""
    last: dict[str, dict[str, Any]] = {}
    for ts, actor, subject, details in db.execute(
        "SELECT ts, actor, subject, details FROM audit WHERE action = 'keys.rotate' ORDER BY seq"
    ).fetchall():
        info = json.loads(details)
        last[subject] = {
            "at": dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="seconds"),
            "by": actor,
            "templates": info.get("template_count"),
            "key_id": info.get("new_key_id"),
        }
    return last


def format_report(report: Mapping[str, Any]) -> str:
    """Plain-text rendering for the CLI."""
    comp = report["compound"]
    lines = [
        f"Compliance report for gate {report['gate']} on {report['date']}",
        f"  people on record:        {report['people_on_record']}",
        f"  enrolled on this gate:   {report['enrolled_this_gate']}",
        f"  enrolled across compound: {comp['total']} (level: {comp['level']})",
    ]
    if "message" in comp:
        lines.append(f"  {comp['message']}")
    if "filing_threshold_crossed_on" in comp:
        lines.append(
            f"  threshold crossed on {comp['filing_threshold_crossed_on']}, "
            f"filing deadline {comp['filing_deadline'] or 'UNKNOWN'} ({comp['calendar']})"
        )
        if comp.get("filing_deadline_error"):
            lines.append(f"  ERROR: {comp['filing_deadline_error']}")
    c = report["consent"]
    lines.append(
        f"  notice version: {c['notice_version']}; consent states: {c['current_status_counts']}"
    )
    lines.append(f"  awaiting re-notice: {c['renotice_pending']}")
    lapsed = c.get("guardian_consent_lapsed") or []
    lines.append(f"  turned 14, own consent needed (face suspended): {len(lapsed)}")
    lines.extend(f"    {pid}" for pid in lapsed)
    lines.append(f"  enrolled without card/PIN: {report['face_only_people']}")
    rotations = report.get("key_rotations") or {}
    lines.append(
        "  key rotations: "
        + (
            ", ".join(f"{what} {r['at']} by {r['by']}" for what, r in sorted(rotations.items()))
            or "none"
        )
    )
    tp = report.get("template_protection") or {}
    lines.append(
        f"  template protection: {tp.get('configured') or tp.get('stored') or 'unknown'} "
        f"({tp.get('templates', 0)} templates stored under {tp.get('stored') or 'none yet'})"
    )
    if tp.get("problem"):
        lines.append(f"    PROBLEM: {tp['problem']}")
    ia = report["impact_assessment"]
    lines.append(f"  impact assessment: {ia['reference'] or 'MISSING'} ({ia['date'] or 'no date'})")
    for cam in report["cameras"]:
        state = "ok" if not cam["problems"] else "; ".join(cam["problems"])
        lines.append(
            f"  camera {cam['name']}: space {cam['space']}, signage "
            f"{'yes' if cam['signage_installed'] else 'NO'} {cam['signage_recorded']} -> {state}"
        )
    if report["retention"]:
        lines.append(
            "  retention: " + ", ".join(f"{k}={v}" for k, v in report["retention"].items())
        )
    lines.append(f"  audit entries: {report['audit_rows']}")
    return "\n".join(lines)


EXPORT_FIELDS = (
    "record_type",
    "ref",
    "ts",
    "person_id",
    "what",
    "notice_version",
    "notice_sha256",
    "method",
    "recorded_by",
    "scope",
    "guardian_id",
    "details",
)


#: Each kind of processing record and its query, columns named as in :data:`EXPORT_FIELDS`.
_RECORD_QUERIES = {
    "consent": (
        "SELECT CAST(id AS TEXT) AS ref, created_at AS ts, person_id, status AS what,"
        " notice_version, notice_sha256, method, recorded_by, scope, guardian_id,"
        " '' AS details FROM consents ORDER BY id"
    ),
    "withdrawal_receipt": (
        "SELECT id AS ref, ts, person_id, 'templates_erased=' || templates_erased AS what,"
        " channel AS method, '' AS details FROM withdrawal_receipts ORDER BY ts"
    ),
    "audit": (
        "SELECT CAST(seq AS TEXT) AS ref, ts, subject AS person_id, action AS what,"
        " actor AS recorded_by, details FROM audit ORDER BY seq"
    ),
}


def processing_records(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Consent records, withdrawal receipts and the audit trail, as flat rows (no biometric)."""
    rows = [
        {"record_type": record_type, **r}
        for record_type, sql in _RECORD_QUERIES.items()
        for r in db.query(sql)
    ]
    return [{k: row.get(k) for k in EXPORT_FIELDS} for row in rows]


def export_records(
    db: sqlite_utils.Database,
    fmt: str,
    out: Path,
    *,
    actor: str = "operator",
    now: float | None = None,
) -> int:
    """Write processing records as ``json`` or ``csv`` to ``out`` (0600); audited; row count."""
    now = time.time() if now is None else now
    if fmt not in ("json", "csv"):
        raise PrivacyError(f"export format {fmt!r} is not json or csv")
    rows = processing_records(db)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as fh:
        out.chmod(0o600)
        if fmt == "json":
            json.dump(
                {"generated_at": now, "fields": EXPORT_FIELDS, "records": rows},
                fh,
                ensure_ascii=False,
                indent=1,
            )
        else:
            writer = csv.DictWriter(fh, fieldnames=EXPORT_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    audit.append(
        db, actor, "export", "processing_records", {"format": fmt, "rows": len(rows)}, now=now
    )
    return len(rows)


def _end_of(day: dt.date) -> float:
    return dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC).timestamp()
