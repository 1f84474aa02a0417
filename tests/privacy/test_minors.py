"""Issue 18 item 10f: a minor's birth month makes guardian consent lapse at 14."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlite_utils

from gateway.cli.main import main
from gateway.errors import PrivacyError
from gateway.privacy import consent, people
from gateway.privacy.compliance import compliance_report
from gateway.privacy.consent import ConsentError
from gateway.privacy.notice import Notice
from gateway.privacy.retention import RetentionPolicy, run_purge
from gateway.privacy.vault import Vault

from .conftest import FakeGallery, random_embedding


def ts(y: int, m: int, d: int) -> float:
    return dt.datetime(y, m, d, 12, tzinfo=dt.UTC).timestamp()


def test_guardian_consent_lapses_at_14_until_own_consent(
    db: sqlite_utils.Database, notice: Notice, vault: Vault, adult: str
) -> None:
    now = ts(2025, 1, 10)
    consent.set_notice(db, notice, now=now)
    kid = people.add_person(db, "Xiao Ming", birth_month="2012-06", guardian_id=adult, now=now)
    assert people.get_person(db, kid).is_minor
    with pytest.raises(ConsentError):  # a 12-year-old cannot consent alone
        consent.grant(db, kid, notice, method="paper", recorded_by="o", scope="device", now=now)
    consent.grant(
        db, kid, notice, method="paper", recorded_by="o", scope="device", guardian_id=adult, now=now
    )
    assert consent.face_status(db, kid, now=ts(2026, 5, 31)).allowed  # still 13
    # June 2026: may have turned 14 -> the guardian's consent no longer counts
    st = consent.face_status(db, kid, now=ts(2026, 6, 2))
    assert not st.allowed
    assert "14" in st.reason
    assert consent.guardian_consent_lapsed(db, ts(2026, 6, 2)) == [kid]
    # the live gallery drops them at the next purge run (not erased)
    gallery = FakeGallery({})
    gallery.replace_person(
        kid, vault.store_templates(db, kid, random_embedding(1)[None], model="m")
    )
    run_purge(db, vault, gallery, RetentionPolicy(), ts(2026, 6, 2))
    assert kid not in gallery.data
    assert vault.has_face_data(db, kid)
    # the guardian cannot renew it; own consent only once 14 for certain (July)
    with pytest.raises(ConsentError):
        consent.grant(
            db,
            kid,
            notice,
            method="paper",
            recorded_by="o",
            scope="device",
            guardian_id=adult,
            now=ts(2026, 6, 3),
        )
    with pytest.raises(ConsentError):
        consent.grant(
            db, kid, notice, method="paper", recorded_by="o", scope="device", now=ts(2026, 6, 3)
        )
    consent.grant(
        db, kid, notice, method="paper", recorded_by="o", scope="device", now=ts(2026, 7, 1)
    )
    assert consent.face_status(db, kid, now=ts(2026, 7, 2)).allowed
    assert consent.guardian_consent_lapsed(db, ts(2026, 7, 2)) == []


def test_compliance_report_lists_lapsed(
    db: sqlite_utils.Database, notice: Notice, adult: str
) -> None:
    now = ts(2020, 3, 1)
    kid = people.add_person(db, "Kid", birth_month="2010-01", guardian_id=adult, now=now)
    consent.grant(
        db, kid, notice, method="paper", recorded_by="o", scope="device", guardian_id=adult, now=now
    )
    rep = compliance_report(db, gate="g", today=dt.date(2024, 2, 1))
    assert rep["consent"]["guardian_consent_lapsed"] == [kid]
    assert (
        compliance_report(db, gate="g", today=dt.date(2023, 12, 1))["consent"][
            "guardian_consent_lapsed"
        ]
        == []
    )


@pytest.mark.parametrize("bad", ["2012", "2012-13", "12-2012", "2012-06-01", "2999-01"])
def test_birth_month_validated(db: sqlite_utils.Database, bad: str) -> None:
    with pytest.raises(PrivacyError):
        people.add_person(db, "X", birth_month=bad)


def test_cli_people_add_birth(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["people", "add", "Guardian", "--db", str(db_path)]) == 0
    guardian = capsys.readouterr().out.strip()
    assert main(["people", "add", "Kid", "--birth", "2020-02", "--db", str(db_path)]) == 1
    assert "guardian" in capsys.readouterr().err
    rc = main(
        ["people", "add", "Kid", "--birth", "2020-02", "--guardian", guardian, "--db", str(db_path)]
    )
    assert rc == 0
    kid = capsys.readouterr().out.strip()
    db = sqlite_utils.Database(str(db_path))
    assert db.execute(
        "SELECT birth_month, is_minor FROM people WHERE id = ?", [kid]
    ).fetchone() == (
        "2020-02",
        1,
    )
