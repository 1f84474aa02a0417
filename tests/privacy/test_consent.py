"""People, consent, guardians, notice validation and re-notice."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlite_utils

from gateway.privacy import audit, consent, people
from gateway.privacy.consent import ConsentError
from gateway.privacy.notice import Notice, NoticeError, load_notice, validate_notice

from .conftest import NOTICE_EN, NOTICE_ZH

DAY = 86400.0


def test_notice_validation_en_zh_and_missing_items() -> None:
    assert validate_notice(NOTICE_EN) == []
    assert validate_notice(NOTICE_ZH) == []
    missing = validate_notice("Purpose: open the gate. Processor: ACME.")
    assert "retention period" in missing
    assert "right to withdraw" in missing
    assert "processor contact" in missing
    assert "purpose" not in missing
    no_retention = "\n".join(
        line for line in NOTICE_ZH.splitlines() if not line.startswith("保存期限")
    )
    assert validate_notice(no_retention) == ["retention period"]


def test_load_notice(tmp_path: Path) -> None:
    p = tmp_path / "n.txt"
    p.write_text("Purpose: x", encoding="utf-8")
    with pytest.raises(NoticeError, match=r"lacks Art\. 5 items"):
        load_notice(p, "1")
    p.write_text(NOTICE_ZH, encoding="utf-8")
    assert load_notice(p, "1").sha256 == Notice("1", NOTICE_ZH).sha256


def test_person_record_has_no_biometric(db: sqlite_utils.Database) -> None:
    pid = people.add_person(db, "Wang Fang", unit="1-101", role="staff")
    assert len(pid) == 32
    int(pid, 16)
    cols = {r[1] for r in db.execute("PRAGMA table_info(people)").fetchall()}
    assert not cols & {"embedding", "template", "image", "photo"}
    with pytest.raises(people.PersonError, match="role"):
        people.add_person(db, "X", role="landlord")


def test_minor_needs_adult_guardian(db: sqlite_utils.Database) -> None:
    with pytest.raises(people.PersonError, match="under 14 needs a guardian"):
        people.add_person(db, "Kid", is_minor=True)
    parent = people.add_person(db, "Parent")
    kid = people.add_person(db, "Kid", is_minor=True, guardian_id=parent)
    with pytest.raises(people.PersonError, match="under 14"):
        people.add_person(db, "Kid2", is_minor=True, guardian_id=kid)  # a minor is no guardian
    assert people.get_person(db, kid).guardian_id == parent


def test_minor_consent_without_guardian_refused(db: sqlite_utils.Database, notice: Notice) -> None:
    parent = people.add_person(db, "Parent")
    other_adult = people.add_person(db, "Neighbour")
    kid = people.add_person(db, "Kid", is_minor=True, guardian_id=parent)
    with pytest.raises(ConsentError, match="under 14 needs a guardian"):
        consent.grant(db, kid, notice, method="paper", recorded_by="office")
    with pytest.raises(ConsentError, match="not an adult person on record"):
        consent.grant(db, kid, notice, method="paper", recorded_by="office", guardian_id="nobody")
    with pytest.raises(ConsentError, match="not this minor's guardian"):
        consent.grant(
            db, kid, notice, method="paper", recorded_by="office", guardian_id=other_adult
        )
    assert consent.latest(db, kid) is None
    cid = consent.grant(db, kid, notice, method="paper", recorded_by="office", guardian_id=parent)
    rec = consent.latest(db, kid)
    assert rec is not None
    assert rec.id == cid
    assert rec.guardian_id == parent
    assert consent.face_status(db, kid).allowed


def test_consent_record_fields_and_audit(
    db: sqlite_utils.Database, adult: str, notice: Notice
) -> None:
    consent.grant(
        db, adult, notice, method="kiosk", recorded_by="kiosk-2", scope="compound", now=1000.0
    )
    rec = consent.latest(db, adult)
    assert rec is not None
    assert (
        rec.status,
        rec.notice_version,
        rec.notice_sha256,
        rec.method,
        rec.recorded_by,
        rec.scope,
    ) == ("granted", "2025-06", notice.sha256, "kiosk", "kiosk-2", "compound")
    assert rec.created_at == 1000.0
    actions = [r[0] for r in db.execute("SELECT action FROM audit ORDER BY seq")]
    assert "consent.granted" in actions
    assert audit.verify(db).ok
    with pytest.raises(ConsentError, match="scope"):
        consent.grant(db, adult, notice, method="kiosk", recorded_by="k", scope="world")
    with pytest.raises(ConsentError, match="method"):
        consent.grant(db, adult, notice, method="telepathy", recorded_by="k")


def test_incomplete_notice_refused(db: sqlite_utils.Database, adult: str) -> None:
    with pytest.raises(NoticeError, match=r"Art\. 5"):
        consent.grant(db, adult, Notice("1", "We use your face."), method="paper", recorded_by="o")


def test_no_consent_declined_and_withdrawn_states(
    db: sqlite_utils.Database, adult: str, notice: Notice
) -> None:
    st = consent.face_status(db, adult)
    assert not st.allowed
    assert "separate, explicit consent" in st.reason
    consent.answer(db, adult, notice, status="declined", method="paper", recorded_by="o")
    assert "declined" in consent.face_status(db, adult).reason
    with pytest.raises(ConsentError, match="declined"):
        consent.require_consent(db, adult)


def test_renotice_grace_then_suspend(db: sqlite_utils.Database, notice: Notice) -> None:
    t0 = 1_700_000_000.0
    a = people.add_person(db, "A", now=t0)
    b = people.add_person(db, "B", now=t0)
    consent.grant(db, a, notice, method="paper", recorded_by="o", now=t0)
    consent.answer(db, b, notice, status="declined", method="paper", recorded_by="o", now=t0)
    v2 = Notice("2026-01", NOTICE_EN + "\nUpdated retention period: 90 days.\n")
    assert consent.set_notice(db, v2, now=t0 + DAY) == 1
    assert consent.set_notice(db, v2, now=t0 + 2 * DAY) == 0  # idempotent
    assert consent.renotice_pending(db) == [a]  # the decliner is not asked again
    assert consent.face_status(db, a, grace_days=30, now=t0 + 10 * DAY).allowed
    st = consent.face_status(db, a, grace_days=30, now=t0 + 32 * DAY)
    assert not st.allowed
    assert "suspended" in st.reason
    with pytest.raises(ConsentError, match="current notice"):
        consent.grant(db, a, notice, method="paper", recorded_by="o", now=t0 + 33 * DAY)
    consent.grant(db, a, v2, method="app", recorded_by="app", now=t0 + 33 * DAY)
    assert consent.renotice_pending(db) == []
    assert consent.face_status(db, a, grace_days=30, now=t0 + 34 * DAY).allowed


def test_validity_period(db: sqlite_utils.Database, notice: Notice) -> None:
    v = people.add_person(
        db, "Visitor", role="visitor", valid_from=100.0, valid_until=200.0, now=50.0
    )
    consent.grant(db, v, notice, method="gate", recorded_by="guard", now=120.0)
    assert consent.face_status(db, v, now=150.0).allowed
    assert "validity" in consent.face_status(db, v, now=250.0).reason


def test_non_face_credential(db: sqlite_utils.Database, adult: str) -> None:
    assert not people.person_has_non_face_credential(db, adult, now=100.0)
    db.execute(
        "INSERT INTO pins (person_id, pin_hash, pin_index, kind, expires_at, created_at)"
        " VALUES (?, 'h', 0, 'visitor', 50, 1)",
        [adult],
    )
    assert not people.person_has_non_face_credential(db, adult, now=100.0)  # expired
    db.execute("INSERT INTO cards (person_id, card_hmac, created_at) VALUES (?, x'01', 1)", [adult])
    assert people.person_has_non_face_credential(db, adult, now=100.0)


def test_enforce_renotice_and_sync_scope(db: sqlite_utils.Database, notice: Notice) -> None:
    from .conftest import FakeGallery, random_embedding

    t0 = 1_700_000_000.0
    a = people.add_person(db, "A", now=t0)
    b = people.add_person(db, "B", now=t0)
    consent.grant(db, a, notice, method="paper", recorded_by="o", scope="compound", now=t0)
    consent.grant(db, b, notice, method="paper", recorded_by="o", now=t0)
    assert consent.may_sync(db, a, now=t0)
    assert not consent.may_sync(db, b, now=t0)
    g = FakeGallery({a: random_embedding(1)[None, :], b: random_embedding(2)[None, :]})
    consent.set_notice(db, Notice("v2", NOTICE_EN + "\nv2\n"), now=t0)
    assert consent.enforce_renotice(db, g, grace_days=30, now=t0 + 5 * DAY) == []
    assert set(g.data) == {a, b}
    assert set(consent.enforce_renotice(db, g, grace_days=30, now=t0 + 31 * DAY)) == {a, b}
    assert g.data == {}
    assert not consent.may_sync(db, a, grace_days=30, now=t0 + 31 * DAY)  # suspended: no sync
