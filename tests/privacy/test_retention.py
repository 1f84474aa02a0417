"""Retention purge: periods, idempotence, audit, minimum record period."""

from __future__ import annotations

import pytest
import sqlite_utils

from gateway.privacy import audit, consent, people
from gateway.privacy.notice import Notice
from gateway.privacy.retention import RetentionError, RetentionPolicy, run_purge, years_before
from gateway.privacy.vault import Vault

from .conftest import FakeGallery, random_embedding

DAY = 86400.0
NOW = 1_800_000_000.0


def test_records_period_under_three_years_refused() -> None:
    with pytest.raises(RetentionError, match="at least 3 years"):
        RetentionPolicy(processing_records_years=2)
    with pytest.raises(RetentionError):
        RetentionPolicy(access_log_days=0)


def test_purge_idempotent(db: sqlite_utils.Database, vault: Vault, notice: Notice) -> None:
    g = FakeGallery({})
    t_old = NOW - 4 * 365 * DAY
    active = people.add_person(db, "Active", now=t_old)
    idle = people.add_person(db, "Idle", now=t_old)
    expired = people.add_person(db, "Gone", role="visitor", valid_until=NOW - 2 * DAY, now=t_old)
    for i, pid in enumerate((active, idle, expired)):
        consent.grant(db, pid, notice, method="paper", recorded_by="o", now=t_old)
        g.replace_person(
            pid, vault.store_templates(db, pid, random_embedding(i)[None, :], model="m")
        )
    db.execute("UPDATE face_keys SET created_at = ?", [NOW - 400 * DAY])
    people.touch_last_seen(db, active, NOW - DAY)
    people.touch_last_seen(db, idle, NOW - 200 * DAY)
    # a superseded old consent (re-granted since) and an old receipt
    consent.grant(db, active, notice, method="app", recorded_by="o", now=NOW - 10 * DAY)
    db.execute(
        "INSERT INTO withdrawal_receipts (id, person_id, channel, templates_erased, ts)"
        " VALUES ('r-old', ?, 'cli', 1, ?)",
        [idle, t_old],
    )
    db.execute(
        "INSERT INTO withdrawal_receipts (id, person_id, channel, templates_erased, ts)"
        " VALUES ('r-new', ?, 'cli', 1, ?)",
        [idle, NOW - DAY],
    )
    for ts in (NOW - 40 * DAY, NOW - 31 * DAY, NOW - 5 * DAY):
        db.execute(
            "INSERT INTO access_log (ts, door, method, granted, reason)"
            " VALUES (?, 'main', 'card', 1, 'ok')",
            [ts],
        )
    db.execute(
        "INSERT INTO pins (person_id, pin_hash, pin_index, kind, expires_at, created_at)"
        " VALUES (?, 'h', 0, 'visitor', ?, 1)",
        [expired, NOW - DAY],
    )
    db.execute(
        "INSERT INTO pins (person_id, pin_hash, pin_index, kind, expires_at, created_at)"
        " VALUES (?, 'h', 0, 'visitor', ?, 1)",
        [active, NOW + DAY],
    )
    db.execute(
        "INSERT INTO pins (person_id, pin_hash, pin_index, kind, created_at)"
        " VALUES (?, 'h', 0, 'normal', 1)",
        [active],
    )

    policy = RetentionPolicy(access_log_days=30, inactive_template_days=180, expired_person_days=0)
    r1 = run_purge(db, vault, g, policy, NOW)
    assert (
        r1.access_log,
        r1.face_people,
        r1.templates_erased,
        r1.visitor_pins,
        r1.consents,
        r1.receipts,
    ) == (2, 2, 2, 1, 1, 1)
    assert set(g.data) == {active}
    assert [r[0] for r in db.execute("SELECT person_id FROM face_keys")] == [active]
    assert db.execute("SELECT count(*) FROM pins").fetchone()[0] == 2
    # each person's current consent record is kept even when old
    assert consent.latest(db, idle) is not None
    audit_rows = db.execute("SELECT count(*) FROM audit").fetchone()[0]

    r2 = run_purge(db, vault, g, policy, NOW)
    assert r2.total == 0
    assert db.execute("SELECT count(*) FROM audit").fetchone()[0] == audit_rows
    assert audit.verify(db).ok


def test_years_before_leap_day() -> None:
    import datetime as dt

    t = dt.datetime(2028, 2, 29, 12, tzinfo=dt.UTC).timestamp()
    assert dt.datetime.fromtimestamp(years_before(t, 3), tz=dt.UTC).date() == dt.date(2025, 2, 28)
