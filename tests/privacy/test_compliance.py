"""Compliance thresholds, filing deadline, processing-record export."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest
import sqlite_utils

from gateway.privacy import audit, consent
from gateway.privacy.compliance import (
    CalendarError,
    CameraRecord,
    Thresholds,
    calendar_name,
    compliance_report,
    export_records,
    format_report,
    is_working_day,
    working_days_after,
)
from gateway.privacy.notice import Notice
from gateway.privacy.retention import RetentionPolicy
from gateway.privacy.vault import Vault

from .conftest import random_embedding


def test_working_days_follow_the_official_calendar() -> None:
    # Fri 2026-01-02 is a New Year holiday; Sun 2026-01-04 is a make-up working day (调休)
    assert working_days_after(dt.date(2026, 1, 2), 1) == dt.date(2026, 1, 4)
    # National Day: Oct 1-7 off, Sat 2026-10-10 worked
    assert working_days_after(dt.date(2026, 9, 30), 1) == dt.date(2026, 10, 8)
    assert working_days_after(dt.date(2026, 10, 9), 1) == dt.date(2026, 10, 10)
    # 30 working days from Mon 2026-03-02: six weeks, plus Mon 2026-04-06 (Qingming) off
    assert working_days_after(dt.date(2026, 3, 2), 30) == dt.date(2026, 4, 14)
    # a configured local closure pushes one more day
    assert working_days_after(dt.date(2026, 3, 2), 30, [dt.date(2026, 4, 8)]) == dt.date(
        2026, 4, 15
    )
    assert is_working_day(dt.date(2026, 2, 28))  # a Saturday worked for the Spring Festival
    assert not is_working_day(dt.date(2026, 10, 1))


def test_a_deadline_beyond_the_calendar_fails_loudly(
    db: sqlite_utils.Database, vault: Vault, consented: str
) -> None:
    """chinese-calendar 1.11 knows 2004-2026: a deadline in 2027 is not guessed."""
    assert calendar_name().startswith("chinese-calendar ")
    with pytest.raises(CalendarError, match="beyond the years chinese-calendar"):
        working_days_after(dt.date(2026, 12, 15), 30)
    vault.store_templates(db, consented, random_embedding(1)[None, :], model="m")
    r = compliance_report(db, gate="g1", today=dt.date(2026, 12, 15), gate_counts={"g2": 99_999})
    comp = r["compound"]
    assert comp["level"] == "filing_required"
    assert comp["filing_deadline"] is None
    assert "upgrade the package" in comp["filing_deadline_error"]
    assert "UNKNOWN" in comp["message"]
    text = format_report(r)
    assert "filing deadline UNKNOWN" in text
    assert "ERROR:" in text


def test_thresholds_and_deadline(db: sqlite_utils.Database, vault: Vault, consented: str) -> None:
    vault.store_templates(db, consented, random_embedding(1)[None, :], model="m")
    th = Thresholds(holidays=(dt.date(2026, 4, 6),))
    r = compliance_report(
        db, gate="g1", today=dt.date(2026, 3, 1), thresholds=th, gate_counts={"g2": 10}
    )
    assert r["enrolled_this_gate"] == 1
    assert r["compound"]["total"] == 11
    assert r["compound"]["level"] == "ok"
    r = compliance_report(
        db, gate="g1", today=dt.date(2026, 3, 1), thresholds=th, gate_counts={"g2": 79_999}
    )
    assert r["compound"]["level"] == "warning"
    assert "filing_deadline" not in r["compound"]
    r = compliance_report(
        db, gate="g1", today=dt.date(2026, 3, 2), thresholds=th, gate_counts={"g1": 5, "g2": 99_999}
    )
    assert r["compound"]["total"] == 100_000  # own gate's count comes from the database
    assert r["compound"]["level"] == "filing_required"
    assert r["compound"]["filing_deadline"] == "2026-04-14"
    # the deadline runs from the first crossing, not from each report
    r = compliance_report(
        db, gate="g1", today=dt.date(2026, 3, 20), thresholds=th, gate_counts={"g2": 99_999}
    )
    assert r["compound"]["filing_threshold_crossed_on"] == "2026-03-02"
    assert r["compound"]["filing_deadline"] == "2026-04-14"
    assert "FILING REQUIRED" in format_report(r)


def test_report_lists_cameras_assessment_retention(db: sqlite_utils.Database) -> None:
    cams = [
        CameraRecord("gate", "public", True, "sign at gate, 2025-05-01"),
        CameraRecord("lobby", "semi_private", False),
    ]
    r = compliance_report(
        db,
        gate="g1",
        today=dt.date(2026, 1, 1),
        cameras=cams,
        assessment_ref="PIA-7",
        assessment_date=dt.date(2025, 5, 1),
        retention=RetentionPolicy(),
    )
    assert r["cameras"][0]["problems"] == []
    assert "signage" in r["cameras"][1]["problems"][0]
    assert r["retention"]["processing_records_years"] == 3
    text = format_report(r)
    assert "PIA-7" in text
    assert "lobby" in text
    json.dumps(r)


def test_export_json_csv_audited(
    db: sqlite_utils.Database, consented: str, notice: Notice, tmp_path: Path
) -> None:
    n = export_records(db, "json", tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    types = {r["record_type"] for r in data["records"]}
    assert {"consent", "audit"} <= types
    assert len(data["records"]) == n
    assert (tmp_path / "r.json").stat().st_mode & 0o077 == 0
    export_records(db, "csv", tmp_path / "r.csv")
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    c = next(r for r in rows if r["record_type"] == "consent")
    assert c["notice_sha256"] == notice.sha256
    assert c["person_id"] == consented
    exports = db.execute("SELECT count(*) FROM audit WHERE action = 'export'").fetchone()[0]
    assert exports == 2
    assert audit.verify(db).ok
    assert consent.latest(db, consented) is not None
