"""Retention: idempotent purge jobs, each logged and audited.

* local access log rows older than ``access_log_days``; younger rows that still hold a person
  id (written before pseudonymisation) get the keyed pseudonym instead;
* ``people.last_seen_at`` of people not seen for ``people_inactive_days`` is cleared, and the
  rows of people whose validity ended more than ``processing_records_years`` ago (with no face
  data left) are deleted, with their cards, PINs and superseded records;
* face data (crypto-erase) of people whose validity ended ``expired_person_days`` ago, or
  who were not seen for ``inactive_template_days`` (``last_seen_at``, else enrolment time);
* visitor PINs past their expiry or with no uses left;
* consent records (superseded ones; each person's current record is kept) and withdrawal
  receipts older than ``processing_records_years`` (at least 3 years: a shorter period is
  refused);
* audit rows beyond ``audit_days`` / ``audit_max_rows``, behind a keyed checkpoint row that
  keeps the chain verifiable (:mod:`gateway.privacy.audit_retention`; needs the chain key).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass

import sqlite_utils

from gateway.errors import PrivacyError
from gateway.privacy import access_log, audit, audit_retention
from gateway.privacy.consent import guardian_consent_lapsed
from gateway.privacy.scrub import complete_pending
from gateway.privacy.vault import GalleryLike, Vault
from gateway.store.tx import transaction

log = logging.getLogger(__name__)

DAY = 86400.0
MIN_RECORD_YEARS = 3


class RetentionError(PrivacyError):
    """A retention setting breaks a rule (e.g. records kept under 3 years)."""


@dataclass(frozen=True)
class RetentionPolicy:
    """Retention periods; names match the ``[retention]`` config section."""

    access_log_days: int = 30
    inactive_template_days: int = 180
    expired_person_days: int = 0
    visitor_pin_grace_days: int = 0
    processing_records_years: int = MIN_RECORD_YEARS
    audit_days: int = 1100
    audit_max_rows: int = 200_000
    people_inactive_days: int = 400

    def __post_init__(self) -> None:
        """Refuse periods the rules do not allow."""
        if self.processing_records_years < MIN_RECORD_YEARS:
            raise RetentionError(
                f"processing_records_years = {self.processing_records_years}: consent "
                f"receipts and processing records must be kept at least {MIN_RECORD_YEARS} years"
            )
        if self.audit_days < self.processing_records_years * 365:
            raise RetentionError(
                f"audit_days = {self.audit_days}: the audit log holds processing records, "
                f"kept at least {self.processing_records_years} years"
            )
        for name in ("access_log_days", "inactive_template_days", "audit_max_rows"):
            if getattr(self, name) < 1:
                raise RetentionError(f"{name} must be at least 1 day")
        if self.people_inactive_days < self.inactive_template_days:
            raise RetentionError("people_inactive_days must be >= inactive_template_days")
        for name in ("expired_person_days", "visitor_pin_grace_days"):
            if getattr(self, name) < 0:
                raise RetentionError(f"{name} must not be negative")


@dataclass(frozen=True)
class PurgeReport:
    """What one purge run removed."""

    access_log: int = 0
    face_people: int = 0
    templates_erased: int = 0
    visitor_pins: int = 0
    consents: int = 0
    receipts: int = 0
    access_log_pseudonymised: int = 0
    last_seen_cleared: int = 0
    people_deleted: int = 0
    audit_pruned: int = 0

    @property
    def total(self) -> int:
        """Rows removed in all."""
        return sum(asdict(self).values())


def years_before(now: float, years: int) -> float:
    """The timestamp ``years`` calendar years before ``now`` (UTC; Feb 29 -> Feb 28)."""
    t = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    try:
        earlier = t.replace(year=t.year - years)
    except ValueError:
        earlier = t.replace(year=t.year - years, day=28)
    return earlier.timestamp()


def run_purge(
    db: sqlite_utils.Database,
    vault: Vault,
    gallery: GalleryLike,
    policy: RetentionPolicy,
    now: float,
    *,
    actor: str = "system:retention",
) -> PurgeReport:
    """Run every purge job once; safe to repeat (a second run removes nothing new)."""
    conn = db.conn
    access = conn.execute(
        "DELETE FROM access_log WHERE ts < ?", (now - policy.access_log_days * DAY,)
    ).rowcount
    stale = [
        r[0]
        for r in conn.execute(
            "SELECT k.person_id FROM face_keys k JOIN people p ON p.id = k.person_id"
            " WHERE (p.valid_until IS NOT NULL AND p.valid_until + ? <= ?)"
            " OR coalesce(p.last_seen_at, k.created_at) < ?"
            " ORDER BY k.person_id",
            (
                policy.expired_person_days * DAY,
                now,
                now - policy.inactive_template_days * DAY,
            ),
        ).fetchall()
    ]
    templates = 0
    for pid in stale:
        gallery.remove_person(pid)
        with transaction(db):
            n = vault.erase_person(db, pid, vacuum=False)
            audit.append(
                db, actor, "template.delete", pid, {"reason": "retention", "count": n}, now=now
            )
        templates += n
    pins = conn.execute(
        "DELETE FROM pins WHERE kind = 'visitor' AND ((expires_at IS NOT NULL AND expires_at < ?)"
        " OR (uses_left IS NOT NULL AND uses_left <= 0))",
        (now - policy.visitor_pin_grace_days * DAY,),
    ).rowcount
    cutoff = years_before(now, policy.processing_records_years)
    consents = conn.execute(
        "DELETE FROM consents WHERE created_at < ?"
        " AND id != (SELECT max(id) FROM consents c2 WHERE c2.person_id = consents.person_id)",
        (cutoff,),
    ).rowcount
    receipts = conn.execute("DELETE FROM withdrawal_receipts WHERE ts < ?", (cutoff,)).rowcount
    for pid in guardian_consent_lapsed(db, now):  # turned 14: own consent needed first
        if gallery.remove_person(pid):
            log.info("person %s suspended from face matching: guardian consent lapsed", pid)
    pseudonymised = access_log.pseudonymise(db)
    cleared, deleted = _purge_people(db, policy, now, cutoff)
    report = PurgeReport(
        access, len(stale), templates, pins, consents, receipts, pseudonymised, cleared, deleted
    )
    if report.total:
        audit.append(db, actor, "purge", "retention", asdict(report), now=now)
    if audit.bound_key(db) is not None:  # the chain key proves what was pruned
        pruned = _prune_audit(db, policy, now, cutoff, actor)
        report = PurgeReport(**{**asdict(report), "audit_pruned": pruned})
    if stale or deleted:
        complete_pending(conn, 0.5)
    log.info(
        "retention purge: %d access log rows, face data of %d people (%d templates), "
        "%d visitor PINs, %d consent records, %d receipts",
        access,
        len(stale),
        templates,
        pins,
        consents,
        receipts,
    )
    return report


def _purge_people(
    db: sqlite_utils.Database, policy: RetentionPolicy, now: float, records_cutoff: float
) -> tuple[int, int]:
    """Clear stale last-seen times; delete long-expired people without face data."""
    conn = db.conn
    cleared = conn.execute(
        "UPDATE people SET last_seen_at = NULL WHERE last_seen_at < ?",
        (now - policy.people_inactive_days * DAY,),
    ).rowcount
    gone = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM people p WHERE valid_until IS NOT NULL AND valid_until < ?"
            " AND NOT EXISTS (SELECT 1 FROM face_keys k WHERE k.person_id = p.id)"
            " AND NOT EXISTS (SELECT 1 FROM consents c WHERE c.person_id = p.id"
            "                 AND c.created_at >= ?)"
            " AND NOT EXISTS (SELECT 1 FROM people g WHERE g.guardian_id = p.id)",
            (records_cutoff, records_cutoff),
        ).fetchall()
    ]
    for pid in gone:
        with transaction(db):
            conn.execute("DELETE FROM people WHERE id = ?", (pid,))
            audit.append(db, "system:retention", "person.delete", pid, {"reason": "retention"})
    return cleared, len(gone)


def _prune_audit(
    db: sqlite_utils.Database, policy: RetentionPolicy, now: float, cutoff: float, actor: str
) -> int:
    rep = audit_retention.prune(
        db,
        now=now,
        max_age_days=policy.audit_days,
        max_rows=policy.audit_max_rows,
        record_cutoff=cutoff,
        actor=actor,
    )
    if rep.over_limit:
        log.warning(
            "audit log over audit_max_rows = %d after pruning: only young processing records "
            "are left",
            policy.audit_max_rows,
        )
    return rep.pruned
