"""Configuration of privacy: retention periods, consent notice, keys, thresholds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import Field

from gateway.config.base import SecretRef, Strict


class RetentionConfig(Strict):
    """How long each kind of record is kept (Art. 8: no longer than needed)."""

    access_log_days: int = Field(30, ge=1, le=3650, description="Local access log.")
    inactive_template_days: int = Field(
        180, ge=7, le=3650, description="Erase face data of people not seen for this long."
    )
    expired_person_days: int = Field(
        0, ge=0, le=3650, description="Erase face data this long after a person's validity ends."
    )
    processing_records_years: int = Field(
        3, ge=3, le=30, description="Consent receipts and processing records (>= 3 years)."
    )
    purge_interval_s: float = Field(3600, ge=60, description="How often purge jobs run.")
    visitor_pin_grace_days: int = Field(
        0, ge=0, le=365, description="Purge visitor PINs this long after they expire."
    )
    audit_days: int = Field(
        1100, ge=1096, le=11000, description="Audit rows older than this are pruned (>= 3 y)."
    )
    audit_max_rows: int = Field(
        200_000,
        ge=1000,
        description="Beyond this, the oldest audit rows are pruned (records carried on).",
    )
    people_inactive_days: int = Field(
        400, ge=30, le=3650, description="Clear last-seen of people not seen for this long."
    )


class ImpactAssessment(Strict):
    """The personal-information protection impact assessment on record (Art. 9)."""

    reference: str = Field(min_length=1, description="Document reference of the assessment.")
    date: dt.date = Field(description="Date the assessment was completed.")


class PrivacyConfig(Strict):
    """Consent notice, keys and the compliance thresholds."""

    notice_file: Path | None = Field(
        None, description="The face-processing notice shown before consent (Art. 5 items)."
    )
    notice_version: str = Field("1", description="Version of the notice text.")
    impact_assessment: ImpactAssessment | None = Field(
        None, description="Required before any face processing is enabled (Art. 9)."
    )
    device_key: SecretRef | None = Field(
        None, description="Device key wrapping template keys and keying card hashes."
    )
    site_key: SecretRef | None = Field(
        None,
        description="Site key shared with the management side: event pseudonyms, the PIN "
        "index and the PIN transport seal.",
    )
    gates_key: SecretRef | None = Field(
        None,
        description="Key shared by the site's gates only (never the office): template "
        "transform, bundle wrapping, withdrawal fan-out. Unset: the site key stands in (gates "
        "set up before it existed). A file not written yet is an error except for 'gateway "
        "keys rotate --what transform', which writes it.",
    )
    template_protection: Literal["orthogonal", "cancelable"] = Field(
        "orthogonal",
        description="How face templates are protected before encryption (ISO/IEC 24745). "
        "'orthogonal': a secret rotation keyed by the gates key: exact scores and 'gateway "
        "keys rotate --what transform' without re-enrolment, but invertible with the key and "
        "linkable across sites by a fitted rotation. 'cancelable': sign bits of a keyed "
        "projection onto a secret subspace: non-invertible, several times harder to link "
        "across sites (not unlinkable), less accurate (thresholds are scaled to keep the "
        "false-alarm rate), and a new key (or switching mode) means re-enrolling every face. "
        "Figures and the choice: benchmarks/eval_unlinkability.py in the benchmark report.",
    )
    pseudonym_epoch_s: int = Field(
        86400, ge=60, description="Rotation period of person pseudonyms in events."
    )
    warn_people: int = Field(
        80_000, ge=1, description="Warn when the compound stores this many people."
    )
    filing_threshold: int = Field(
        100_000, ge=1, description="Filing with the authority due within 30 working days (Art. 15)."
    )
    holidays: list[dt.date] = Field(
        default_factory=list,
        description="Extra non-working days for the filing deadline, besides China's official "
        "holidays and make-up working days (from the chinese-calendar package).",
    )
    compliance_check_interval_s: float = Field(
        300,
        ge=60,
        le=86400,
        description="How often the daemon checks the people-with-face-data count against "
        "warn_people and filing_threshold (an alert event once per crossing).",
    )
    renotice_grace_days: int = Field(
        30, ge=0, le=365, description="Days face matching continues after a notice change."
    )
    enrol_min_good: int = Field(
        1, ge=1, le=20, description="Good images needed for an enrolment to succeed."
    )
    enrol_max_templates: int = Field(
        10, ge=1, le=50, description="Templates kept per person at most."
    )
    gate_enrol_frames: int = Field(
        3, ge=1, le=20, description="Good frames captured for an enrolment at the gate."
    )
    gate_enrol_timeout_s: float = Field(
        30.0, gt=0, le=300, description="Time allowed for an enrolment at the gate."
    )
