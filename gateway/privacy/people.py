"""People on record. A person row carries no biometric: random id, name, unit, role, validity,
and for under-14s the guardian link. Face data lives only in the vault tables.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import sqlite_utils

from gateway.errors import PrivacyError
from gateway.privacy import audit

log = logging.getLogger(__name__)

Role = Literal["resident", "visitor", "staff"]
ROLES: tuple[str, ...] = ("resident", "visitor", "staff")

GUARDIAN_RULE = (
    "a person under 14 needs a guardian who is an adult person on record "
    "(guardian consent for minors' face data)"
)


class PersonError(PrivacyError):
    """A person record is invalid or unknown."""


@dataclass(frozen=True)
class Person:
    """One row of ``people``."""

    id: str
    display_name: str
    unit: str
    role: str
    access_group: str
    valid_from: float | None
    valid_until: float | None
    is_minor: bool
    guardian_id: str | None
    needs_renotice: bool
    last_seen_at: float | None
    created_at: float
    birth_month: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Person:
        """Build from a ``people`` row dict."""
        return cls(
            id=row["id"],
            display_name=row["display_name"],
            unit=row["unit"],
            role=row["role"],
            access_group=row["access_group"],
            valid_from=row["valid_from"],
            valid_until=row["valid_until"],
            is_minor=bool(row["is_minor"]),
            guardian_id=row["guardian_id"],
            needs_renotice=bool(row["needs_renotice"]),
            last_seen_at=row["last_seen_at"],
            created_at=row["created_at"],
            birth_month=row.get("birth_month"),
        )

    def minor_at(self, now: float) -> bool:
        """Whether the person cannot consent for themselves at ``now`` (birth month, else flag)."""
        from gateway.privacy.minors import is_minor_at

        return is_minor_at(self.birth_month, self.is_minor, now)

    def valid_at(self, now: float) -> bool:
        """True when ``now`` is inside the validity period."""
        if self.valid_from is not None and now < self.valid_from:
            return False
        return not (self.valid_until is not None and now >= self.valid_until)


def get_person(db: sqlite_utils.Database, person_id: str) -> Person:
    """The person with ``person_id``; :class:`PersonError` if unknown."""
    rows = list(db.query("SELECT * FROM people WHERE id = ?", [person_id]))
    if not rows:
        raise PersonError(f"no person {person_id!r} on record")
    return Person.from_row(rows[0])


def find_person(db: sqlite_utils.Database, person_id: str) -> Person | None:
    """The person with ``person_id`` or None."""
    try:
        return get_person(db, person_id)
    except PersonError:
        return None


def list_people(db: sqlite_utils.Database) -> list[Person]:
    """Everyone on record, by name."""
    return [Person.from_row(r) for r in db.query("SELECT * FROM people ORDER BY display_name, id")]


def is_adult_on_record(db: sqlite_utils.Database, person_id: str | None, now: float) -> bool:
    """True when ``person_id`` is a person on record, not a minor, and currently valid."""
    if not person_id:
        return False
    p = find_person(db, person_id)
    return p is not None and not p.minor_at(now) and p.valid_at(now)


def add_person(
    db: sqlite_utils.Database,
    display_name: str,
    *,
    unit: str = "",
    role: str = "resident",
    access_group: str = "residents",
    valid_from: float | None = None,
    valid_until: float | None = None,
    is_minor: bool = False,
    guardian_id: str | None = None,
    actor: str = "operator",
    now: float | None = None,
    birth_month: str | None = None,
) -> str:
    """Create a person and return the new random id (uuid4 hex). Audited.

    ``birth_month`` (``YYYY-MM``) makes minority a date, not a flag: guardian consent lapses
    at 14 (:mod:`gateway.privacy.minors`).
    """
    from gateway.privacy.minors import is_minor_at, parse_birth_month

    now = time.time() if now is None else now
    if birth_month is not None:
        birth_month = parse_birth_month(birth_month, now=now)
        is_minor = is_minor or is_minor_at(birth_month, False, now)
    name = display_name.strip()
    if not name:
        raise PersonError("display name must not be empty")
    if role not in ROLES:
        raise PersonError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise PersonError("validity period ends before it starts")
    if is_minor and not is_adult_on_record(db, guardian_id, now):
        raise PersonError(f"refused: {GUARDIAN_RULE}; guardian {guardian_id!r} is not one")
    if not is_minor and guardian_id is not None:
        raise PersonError("a guardian link is only recorded for minors (use --minor)")
    pid = uuid.uuid4().hex
    db.table("people").insert(
        {
            "id": pid,
            "display_name": name,
            "unit": unit,
            "role": role,
            "access_group": access_group,
            "valid_from": valid_from,
            "valid_until": valid_until,
            "is_minor": int(is_minor),
            "guardian_id": guardian_id,
            "needs_renotice": 0,
            "last_seen_at": None,
            "created_at": now,
            "birth_month": birth_month,
        }
    )
    audit.append(
        db,
        actor,
        "person.add",
        pid,
        {
            "role": role,
            "is_minor": is_minor,
            "guardian_id": guardian_id,
            "birth_month_recorded": birth_month is not None,
        },
        now=now,
    )
    log.info("person %s added (role %s, minor %s)", pid, role, is_minor)
    return pid


def touch_last_seen(db: sqlite_utils.Database, person_id: str, now: float) -> None:
    """Record that the person passed a gate (drives the inactivity purge)."""
    db.execute("UPDATE people SET last_seen_at = ? WHERE id = ?", [now, person_id])


def person_has_non_face_credential(
    db: sqlite_utils.Database, person_id: str, now: float | None = None
) -> bool:
    """True when the person has a usable card or PIN (face is never the only way in)."""
    now = time.time() if now is None else now
    card = db.execute(
        "SELECT 1 FROM cards WHERE person_id = ? AND revoked_at IS NULL LIMIT 1", [person_id]
    ).fetchone()
    if card:
        return True
    pin = db.execute(
        "SELECT 1 FROM pins WHERE person_id = ? AND revoked_at IS NULL AND kind != 'duress'"
        " AND (expires_at IS NULL OR expires_at > ?) AND (uses_left IS NULL OR uses_left > 0)"
        " LIMIT 1",
        [person_id, now],
    ).fetchone()
    return pin is not None


def face_only_people(db: sqlite_utils.Database, now: float | None = None) -> list[str]:
    """Enrolled people (face data on record) with no usable card or PIN."""
    return [
        r[0]
        for r in db.execute("SELECT person_id FROM face_keys ORDER BY person_id").fetchall()
        if not person_has_non_face_credential(db, r[0], now)
    ]
