"""Issue #15 item 7: the exact count of people with face data, the 80,000 / 100,000
thresholds watched by the daemon (an anonymized alert event and an audit row once per
crossing), the filing deadline in official working days."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sqlite_utils

from gateway.gate.audit_watch import AuditWatch
from gateway.mqtt import events as ev
from gateway.privacy import audit, consent, people
from gateway.privacy.compliance import Thresholds
from gateway.privacy.notice import Notice
from gateway.privacy.vault import StaticKeyProvider, Vault
from gateway.services import compliance as svc
from gateway.services.withdrawal import withdraw
from gateway.store import database as store
from tests.privacy.conftest import NOTICE_EN, FakeGallery

TH = Thresholds(warn_people=3, filing_threshold=5)


@pytest.fixture
def db() -> Iterator[sqlite_utils.Database]:
    d = store.connect(":memory:")
    yield d
    d.conn.close()


def _enrol(db: sqlite_utils.Database, vault: Vault, n: int) -> list[str]:
    pids = []
    for i in range(n):
        pid = people.add_person(db, f"Person {i}", unit=f"1-{i:03d}")
        consent.grant(db, pid, Notice("1", NOTICE_EN), method="paper", recorded_by="t")
        emb = np.random.default_rng(i).standard_normal((2, 128)).astype(np.float32)
        vault.store_templates(db, pid, emb, model="sface")
        pids.append(pid)
    return pids


def _alerts(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    rows = db.execute("SELECT subject, details FROM audit WHERE action = 'compliance.alert'")
    return [{"subject": r[0], **json.loads(r[1])} for r in rows.fetchall()]


def test_face_data_count_is_exact(db: sqlite_utils.Database) -> None:
    vault = Vault(StaticKeyProvider(secrets.token_bytes(32)), secrets.token_bytes(32))
    pids = _enrol(db, vault, 4)
    people.add_person(db, "No Face", unit="9-999")  # on record, no face data
    assert svc.face_data_count(db) == 4  # people, not templates (two each)
    withdraw(db, vault, FakeGallery({}), pids[0], "cli")
    assert svc.face_data_count(db) == 3


def test_the_watch_alerts_once_per_crossing_and_audits_it(db: sqlite_utils.Database) -> None:
    day = dt.date(2026, 3, 2)
    assert svc.watch_thresholds(db, 2, TH, day) is None
    warn = svc.watch_thresholds(db, 3, TH, day)
    assert warn == svc.Crossing("warning", 3, None)
    assert svc.watch_thresholds(db, 4, TH, day) is None  # the level holds: no repeat
    filing = svc.watch_thresholds(db, 5, TH, day)
    assert filing is not None
    assert (filing.level, filing.deadline) == ("filing_required", dt.date(2026, 4, 14))
    assert svc.watch_thresholds(db, 6, TH, day + dt.timedelta(days=3)) is None
    # it falls below and crosses again: a new crossing, the deadline still from the first
    assert svc.watch_thresholds(db, 1, TH, day) is None
    again = svc.watch_thresholds(db, 5, TH, dt.date(2026, 3, 20))
    assert again is not None
    assert again.deadline == dt.date(2026, 4, 14)
    alerts = _alerts(db)
    assert [(a["level"], a["people_with_face_data"]) for a in alerts] == [
        ("warning", 3),
        ("filing_required", 5),
        ("filing_required", 5),
    ]
    assert all(a["subject"] == "compound" for a in alerts)
    assert alerts[1]["filing_deadline"] == "2026-04-14"
    assert audit.verify(db).ok


def test_a_deadline_the_calendar_cannot_tell_is_alerted_without_a_date(
    db: sqlite_utils.Database,
) -> None:
    crossing = svc.watch_thresholds(db, 5, TH, dt.date(2026, 12, 20))
    assert crossing is not None
    assert crossing.deadline is None
    assert "beyond the years" in (crossing.deadline_error or "")
    (alert,) = _alerts(db)
    assert alert["filing_deadline"] is None
    assert "upgrade the package" in alert["deadline_error"]


def test_the_daemon_watch_emits_anonymized_alert_events(db: sqlite_utils.Database) -> None:
    vault = Vault(StaticKeyProvider(secrets.token_bytes(32)), secrets.token_bytes(32))
    pids = _enrol(db, vault, 3)
    emitted: list[Any] = []
    others = {"n": 0}

    async def run_db(fn: Any, *a: Any, **k: Any) -> Any:
        return fn(*a, **k)

    async def other_gates() -> int:
        return others["n"]

    watch = AuditWatch(
        db, run_db, emitted.append, "site1", "gate1", other_gate_counts=other_gates, thresholds=TH
    )

    async def scenario() -> None:
        await watch.check_counts()  # 3 here: the warning
        await watch.check_counts()  # no repeat
        others["n"] = 2
        await watch.check_counts()  # 5: filing required

    asyncio.run(scenario())
    assert [(e.code, e.value) for e in emitted] == [
        (ev.ComplianceCode.CAPACITY_WARNING, 3),
        (ev.ComplianceCode.FILING_REQUIRED, 5),
    ]
    text = b"".join(e.to_json() for e in emitted).decode()
    for pid in pids:
        assert pid not in text
    assert "Person" not in text
    today = dt.datetime.now().astimezone().date()
    assert emitted[1].due is None or emitted[1].due > today
    ev.parse_event(emitted[1].to_json())  # the schema holds it


def test_the_report_takes_the_configured_thresholds(
    minimal_config: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli.main import main
    from gateway.config.root import load_config
    from gateway.keys import Keys

    text = minimal_config.read_text().replace(
        "[privacy]\n", "[privacy]\nwarn_people = 1\nfiling_threshold = 5\n"
    )
    minimal_config.write_text(text)
    cfg = load_config(minimal_config, env=False)
    db = store.connect(cfg.storage.database_path)
    keys = Keys.from_config(cfg)
    audit.bind_key(db, audit.ChainKey.from_device(keys.device))
    _enrol(db, Vault.from_keys(keys), 1)
    db.close()
    code = main(["--config", str(minimal_config), "compliance", "report", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert code == 0
    assert rep["thresholds"] == {"warn_people": 1, "filing_threshold": 5}
    assert (rep["compound"]["level"], rep["compound"]["total"]) == ("warning", 1)
    code = main(["--config", str(minimal_config), "compliance", "report", "--warn-people", "2"])
    assert code == 0
    assert "level: ok" in capsys.readouterr().out  # an option still overrides the file
