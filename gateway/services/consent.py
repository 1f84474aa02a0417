"""Face-processing consent: grant, decline, show, put a notice in force.

Withdrawal (which also erases face data) is :mod:`gateway.services.withdrawal`. The rules
(minors, guardians, re-notice) are :mod:`gateway.privacy.consent`; these functions are the
operations the CLI, the MQTT commands and the web console call. Each is audited there.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from gateway.privacy import consent, people
from gateway.privacy.consent import ConsentRecord, FaceStatus
from gateway.privacy.notice import Notice


@dataclass(frozen=True)
class ConsentAnswer:
    """What the person was asked and answered."""

    person_id: str
    method: str
    recorded_by: str
    guardian_id: str | None = None
    scope: str = "device"


@dataclass(frozen=True)
class ConsentGranted:
    """A recorded grant: its row id and the notice it was given on."""

    consent_id: int
    notice: Notice


@dataclass(frozen=True)
class ConsentView:
    """A person's consent history, oldest first, and whether face processing is allowed."""

    history: list[ConsentRecord]
    face: FaceStatus


def grant(db: sqlite_utils.Database, notice: Notice, answer: ConsentAnswer) -> ConsentGranted:
    """Record consent given on ``notice`` (the exact text shown)."""
    cid = consent.grant(
        db,
        answer.person_id,
        notice,
        method=answer.method,
        recorded_by=answer.recorded_by,
        scope=answer.scope,
        guardian_id=answer.guardian_id,
    )
    return ConsentGranted(cid, notice)


def decline(db: sqlite_utils.Database, notice: Notice, answer: ConsentAnswer) -> None:
    """Record that the person declined (they will not be asked again)."""
    consent.answer(
        db,
        answer.person_id,
        notice,
        status="declined",
        method=answer.method,
        recorded_by=answer.recorded_by,
        guardian_id=answer.guardian_id,
    )


def show(db: sqlite_utils.Database, person_id: str, *, grace_days: float) -> ConsentView:
    """The consent history of a person on record and the face-processing state."""
    people.get_person(db, person_id)
    history = consent.history(db, person_id)
    return ConsentView(history, consent.face_status(db, person_id, grace_days=grace_days))


def put_notice_in_force(db: sqlite_utils.Database, notice: Notice, *, actor: str) -> int:
    """Make ``notice`` the one in force; return how many people are flagged for re-notice."""
    return consent.set_notice(db, notice, actor=actor)
