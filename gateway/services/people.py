"""People on record: add, list, show, export a template bundle, delete (PIPL Art. 47).

Each function takes its dependencies explicitly, audits what it changes (through
:mod:`gateway.privacy.audit`) and returns a typed result; refusals raise
:class:`gateway.errors.PrivacyError` (``PersonError`` for an unknown id).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlite_utils

from gateway.privacy import audit, consent, people
from gateway.privacy.people import Person, PersonError
from gateway.privacy.scrub import complete_pending, mark_pending
from gateway.privacy.vault import GalleryLike, Vault
from gateway.services.cache_state import CacheState
from gateway.services.withdrawal import withdraw
from gateway.store.tx import transaction

if TYPE_CHECKING:
    from gateway.credentials.store import Credentials

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewPerson:
    """What ``add_person`` records (no biometrics)."""

    name: str
    unit: str = ""
    role: str = "resident"
    access_group: str = "residents"
    valid_from: float | None = None
    valid_until: float | None = None
    is_minor: bool = False
    birth_month: str | None = None
    guardian_id: str | None = None


@dataclass(frozen=True)
class PersonRow:
    """One line of the people list."""

    person: Person
    face_enrolled: bool
    consent_status: str | None


@dataclass(frozen=True)
class PersonDetails:
    """One person, with what the gate holds about them."""

    person: Person
    templates: int
    face: consent.FaceStatus
    has_card_or_pin: bool


@dataclass(frozen=True)
class PersonDeleted:
    """What :func:`delete_person` erased (no biometric, no card number)."""

    person_id: str
    templates_erased: int
    cards: int
    pins: int
    consents: int
    receipt_id: str


@dataclass(frozen=True)
class DeletionDeps:
    """What deleting a person needs: the card/PIN store (its database is the one written),
    the face vault and live gallery, the daemon's cache state when inside the daemon."""

    credentials: Credentials
    vault: Vault
    gallery: GalleryLike
    cache: CacheState | None = None
    clock: Callable[[], float] = time.time


def add_person(db: sqlite_utils.Database, new: NewPerson, *, actor: str) -> str:
    """Record a person; return the new random id. Audited as ``person.add``."""
    return people.add_person(
        db,
        new.name,
        unit=new.unit,
        role=new.role,
        access_group=new.access_group,
        valid_from=new.valid_from,
        valid_until=new.valid_until,
        is_minor=new.is_minor,
        birth_month=new.birth_month,
        guardian_id=new.guardian_id,
        actor=actor,
    )


def list_people(db: sqlite_utils.Database) -> list[PersonRow]:
    """Everyone on record, with face enrolment and the latest consent state."""
    enrolled = {r[0] for r in db.execute("SELECT person_id FROM face_keys")}
    rows = []
    for p in people.list_people(db):
        rec = consent.latest(db, p.id)
        rows.append(PersonRow(p, p.id in enrolled, rec.status if rec else None))
    return rows


def show_person(db: sqlite_utils.Database, person_id: str, *, grace_days: float) -> PersonDetails:
    """One person's record, template count, face-processing state and credentials."""
    p = people.get_person(db, person_id)
    n = db.execute("SELECT count(*) FROM templates WHERE person_id = ?", [p.id]).fetchone()[0]
    st = consent.face_status(db, p.id, grace_days=grace_days)
    return PersonDetails(p, int(n), st, people.person_has_non_face_credential(db, p.id))


def find_person(db: sqlite_utils.Database, person_id: str) -> Person | None:
    """The person with ``person_id``, or None."""
    return people.find_person(db, person_id)


def export_bundle(
    db: sqlite_utils.Database,
    vault: Vault,
    person_id: str,
    site_root: bytes,
    *,
    seal_key: bytes,
    actor: str,
    grace_days: float,
) -> dict[str, Any]:
    """The ``sync_person`` args (encrypted for the site's gates; the person sealed under
    ``seal_key``, the site key) of an enrolled person. Audited."""
    from gateway.privacy.sync import export_sync_args

    return export_sync_args(
        db, vault, person_id, site_root, seal_key=seal_key, actor=actor, grace_days=grace_days
    )


def delete_person(
    deps: DeletionDeps, person_id: str, *, actor: str, channel: str, scrub_wait_s: float = 0.8
) -> PersonDeleted:
    """Erase a person (PIPL Art. 47): their face data (a withdrawal receipt, so that the
    running daemon announces it and the site's other gates erase their copies too), then
    on this gate their cards, PINs, consent records and the person record (a record another
    gate holds, e.g. from ``sync_person``, is deleted there the same way). The audit chain
    keeps its rows (``template.delete``, ``person.delete``). Refused for the guardian on
    record of someone: re-assign the minor first. One transaction; afterwards the WAL is
    scrubbed (waiting at most ``scrub_wait_s`` for old readers; the daemon's next pass
    finishes otherwise), so no name or hash stays readable in the database files."""
    creds = deps.credentials
    db = creds.db
    people.get_person(db, person_id)  # PersonError for an unknown id
    wards = db.execute("SELECT count(*) FROM people WHERE guardian_id = ?", [person_id])
    if wards.fetchone()[0]:
        raise PersonError(f"person {person_id} is the guardian of a minor on record")
    creds.forget_cards(person_id)  # refused from now on, even if the writes below fail
    creds.forget_pins(person_id)
    if deps.cache is not None:
        deps.cache.note_change(person_id)
    now = deps.clock()
    with transaction(db):  # all or nothing: the face data and the record go together
        receipt = withdraw(
            db, deps.vault, deps.gallery, person_id, channel, actor=actor, vacuum=False, now=now
        )
        counts = [_count(db, table, person_id) for table in ("cards", "pins", "consents")]
        db.execute("DELETE FROM lockouts WHERE scope = 'person' AND subject = ?", [person_id])
        db.execute("DELETE FROM people WHERE id = ?", [person_id])  # cascades: see schema
        mark_pending(db, now)  # the freed pages: out of the WAL by the scrub below
        audit.append(
            db,
            actor,
            "person.delete",
            person_id,
            {
                "reason": "erasure_request",
                "channel": channel,
                "cards": counts[0],
                "pins": counts[1],
                "consents": counts[2],
            },
            now=now,
        )
    complete_pending(db.conn, scrub_wait_s)
    log.info("a person was deleted via %s (%d templates erased)", channel, receipt.templates_erased)
    cards, pins, consents = counts
    return PersonDeleted(person_id, receipt.templates_erased, cards, pins, consents, receipt.id)


def _count(db: sqlite_utils.Database, table: str, person_id: str) -> int:
    sql = f"SELECT count(*) FROM {table} WHERE person_id = ?"  # noqa: S608 - fixed names
    return int(db.execute(sql, [person_id]).fetchone()[0])
