"""Separate, explicit consent to face processing, recorded against the notice shown.

Rules enforced here (each refusal is a :class:`ConsentError` naming the rule):

* consent is per person, for the purpose ``face_processing`` only, recorded with the notice
  version, the SHA-256 of the notice text shown, the method, who recorded it and the scope
  (``device``: this gate only; ``compound``: may be synced to the compound's gates);
* the notice must contain every Art. 5 item, and must be the current notice;
* a minor's consent is given by their guardian on record, who must be an adult person on
  record; otherwise it is refused;
* the latest consent row is the person's state (granted / declined / withdrawn).

Notice changes: :func:`set_notice` flags everyone whose latest consent is ``granted`` under
an older notice with ``needs_renotice = 1``. Their face matching keeps working for
``grace_days`` after the change, then is suspended until they consent to the new notice.
People who declined (or withdrew) are not flagged and never asked again by the system.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import sqlite_utils

from gateway.errors import PrivacyError
from gateway.privacy import audit
from gateway.privacy.minors import LAPSE_RULE, guardian_lapsed
from gateway.privacy.notice import Notice
from gateway.privacy.people import GUARDIAN_RULE, find_person, get_person, is_adult_on_record
from gateway.store.kv import put_kv
from gateway.store.tx import transaction

log = logging.getLogger(__name__)

METHODS = ("paper", "kiosk", "app", "gate", "web")
SCOPES = ("device", "compound")
NOTICE_VERSION_KEY = "privacy.notice.version"
NOTICE_SHA_KEY = "privacy.notice.sha256"
NOTICE_CHANGED_KEY = "privacy.notice.changed_at"

CONSENT_RULE = "face processing needs the person's separate, explicit consent"
RENOTICE_RULE = "the notice changed and the renotice grace period is over: consent again"


class ConsentError(PrivacyError):
    """A consent operation or a consent-dependent operation was refused."""


@dataclass(frozen=True)
class ConsentRecord:
    """One row of ``consents``."""

    id: int
    person_id: str
    status: str
    notice_version: str
    notice_sha256: str
    method: str
    recorded_by: str
    scope: str
    guardian_id: str | None
    created_at: float


@dataclass(frozen=True)
class FaceStatus:
    """Whether face processing is allowed for a person now, and why (not)."""

    allowed: bool
    reason: str
    consent: ConsentRecord | None = None


def _kv_get(db: sqlite_utils.Database, key: str) -> str | None:
    row = db.execute("SELECT value FROM kv WHERE key = ?", [key]).fetchone()
    return None if row is None else str(row[0])


def current_notice_version(db: sqlite_utils.Database) -> str | None:
    """The notice version in force on this device (set by :func:`set_notice`)."""
    return _kv_get(db, NOTICE_VERSION_KEY)


def set_notice(
    db: sqlite_utils.Database, notice: Notice, *, actor: str = "system", now: float | None = None
) -> int:
    """Make ``notice`` current; on a version change flag granted people for re-notice.

    Idempotent for the same version. Returns the number of people newly flagged.
    """
    notice.require_complete()
    now = time.time() if now is None else now
    old = current_notice_version(db)
    if old == notice.version:
        if _kv_get(db, NOTICE_SHA_KEY) != notice.sha256:
            log.warning(
                "notice version %s text changed without a new version number", notice.version
            )
        return 0
    flagged = 0
    with transaction(db):
        if old is not None:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT c.person_id FROM consents c"
                    " WHERE c.id = (SELECT max(id) FROM consents WHERE person_id = c.person_id)"
                    " AND c.status = 'granted' AND c.notice_version != ?",
                    [notice.version],
                ).fetchall()
            ]
            for pid in ids:
                db.execute("UPDATE people SET needs_renotice = 1 WHERE id = ?", [pid])
            flagged = len(ids)
        put_kv(db, NOTICE_VERSION_KEY, notice.version)
        put_kv(db, NOTICE_SHA_KEY, notice.sha256)
        put_kv(db, NOTICE_CHANGED_KEY, repr(now))
    audit.append(
        db,
        actor,
        "notice.change",
        notice.version,
        {"old_version": old, "sha256": notice.sha256, "flagged_for_renotice": flagged},
        now=now,
    )
    log.info(
        "notice version %s in force (was %s); %d people to re-notice", notice.version, old, flagged
    )
    return flagged


def latest(db: sqlite_utils.Database, person_id: str) -> ConsentRecord | None:
    """The person's latest consent record (their current state) or None."""
    rows = list(
        db.query(
            "SELECT id, person_id, status, notice_version, notice_sha256, method, recorded_by,"
            " scope, guardian_id, created_at FROM consents WHERE person_id = ?"
            " ORDER BY id DESC LIMIT 1",
            [person_id],
        )
    )
    return ConsentRecord(**rows[0]) if rows else None


def history(db: sqlite_utils.Database, person_id: str) -> list[ConsentRecord]:
    """All consent records of a person, oldest first."""
    return [
        ConsentRecord(**r)
        for r in db.query(
            "SELECT id, person_id, status, notice_version, notice_sha256, method, recorded_by,"
            " scope, guardian_id, created_at FROM consents WHERE person_id = ? ORDER BY id",
            [person_id],
        )
    ]


def _record(
    db: sqlite_utils.Database,
    person_id: str,
    status: str,
    *,
    notice_version: str,
    notice_sha256: str,
    method: str,
    recorded_by: str,
    scope: str,
    guardian_id: str | None,
    now: float,
) -> int:
    with transaction(db):
        cur = db.execute(
            "INSERT INTO consents (person_id, purpose, status, notice_version, notice_sha256,"
            " method, recorded_by, scope, guardian_id, created_at)"
            " VALUES (?, 'face_processing', ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                person_id,
                status,
                notice_version,
                notice_sha256,
                method,
                recorded_by,
                scope,
                guardian_id,
                now,
            ],
        )
        cid = int(cur.lastrowid or 0)
        if status == "granted":
            db.execute("UPDATE people SET needs_renotice = 0 WHERE id = ?", [person_id])
        audit.append(
            db,
            recorded_by,
            f"consent.{status}",
            person_id,
            {
                "consent_id": cid,
                "notice_version": notice_version,
                "method": method,
                "scope": scope,
                "guardian_id": guardian_id,
            },
            now=now,
        )
    return cid


def answer(
    db: sqlite_utils.Database,
    person_id: str,
    notice: Notice,
    *,
    status: Literal["granted", "declined"],
    method: str,
    recorded_by: str,
    scope: str = "device",
    guardian_id: str | None = None,
    now: float | None = None,
) -> int:
    """Check and record a person's (or guardian's) answer to ``notice``, ``granted`` or
    ``declined`` (then they are not asked again); the first grant on this device puts
    ``notice`` in force. Return the consent id; refusals raise :class:`ConsentError`."""
    now = time.time() if now is None else now
    if scope not in SCOPES:
        raise ConsentError(f"consent scope {scope!r} is not one of {', '.join(SCOPES)}")
    person = get_person(db, person_id)
    if method not in METHODS:
        raise ConsentError(f"consent method {method!r} is not one of {', '.join(METHODS)}")
    if not recorded_by.strip():
        raise ConsentError("consent must say who recorded it")
    notice.require_complete()
    current = current_notice_version(db)
    if current is not None and notice.version != current:
        raise ConsentError(
            f"refused: consent must be given on the current notice (version {current}), "
            f"not version {notice.version}"
        )
    if guardian_id is not None and guardian_lapsed(person.birth_month, now):
        raise ConsentError(f"refused: {LAPSE_RULE}")
    if person.minor_at(now):
        if guardian_id is None:
            raise ConsentError(f"refused: {GUARDIAN_RULE}; no guardian named for this consent")
        if not is_adult_on_record(db, guardian_id, now):
            raise ConsentError(
                f"refused: {GUARDIAN_RULE}; {guardian_id!r} is not an adult person on record"
            )
        if person.guardian_id is not None and guardian_id != person.guardian_id:
            raise ConsentError(
                f"refused: {GUARDIAN_RULE}; {guardian_id!r} is not this minor's guardian on record"
            )
    elif guardian_id is not None:
        raise ConsentError("a guardian only gives consent for a minor")
    if status == "granted" and current is None:
        set_notice(db, notice, actor=recorded_by, now=now)
    return _record(
        db,
        person_id,
        status,
        notice_version=notice.version,
        notice_sha256=notice.sha256,
        method=method,
        recorded_by=recorded_by,
        scope=scope,
        guardian_id=guardian_id,
        now=now,
    )


grant = functools.partial(answer, status="granted")
"""Record granted face-processing consent (:func:`answer` with ``status="granted"``);
return the consent id (refusals raise)."""


def record_withdrawal(
    db: sqlite_utils.Database, person_id: str, *, channel: str, recorded_by: str, now: float
) -> int:
    """Append a ``withdrawn`` consent row (used by :func:`gateway.services.withdrawal.withdraw`).

    The row's method is the channel the withdrawal really came through (``cli``, ``mqtt``,
    ``gate`` for the keypad menu, ``web``, ``paper``...), never a substitute.
    """
    if not channel or not channel.isascii() or not channel.replace("_", "").isalnum():
        raise ConsentError(f"withdrawal channel {channel!r} is not a channel name")
    prev = latest(db, person_id)
    return _record(
        db,
        person_id,
        "withdrawn",
        notice_version=prev.notice_version if prev else (current_notice_version(db) or ""),
        notice_sha256=prev.notice_sha256 if prev else "",
        method=channel,  # the real channel (cli, mqtt, gate keypad, web, paper, compound...)
        recorded_by=recorded_by,
        scope=prev.scope if prev else "device",
        guardian_id=prev.guardian_id if prev else None,
        now=now,
    )


def face_status(
    db: sqlite_utils.Database,
    person_id: str,
    *,
    grace_days: float = 30,
    now: float | None = None,
) -> FaceStatus:
    """May the person's face be enrolled/matched now? Reason names the rule when not."""
    now = time.time() if now is None else now
    person = find_person(db, person_id)
    if person is None:
        return FaceStatus(False, f"no person {person_id!r} on record")
    if not person.valid_at(now):
        return FaceStatus(False, "person is outside their validity period")
    rec = latest(db, person_id)
    if rec is None:
        return FaceStatus(False, f"refused: {CONSENT_RULE}; no consent on record")
    if rec.status != "granted":
        return FaceStatus(False, f"refused: {CONSENT_RULE}; consent is {rec.status}", rec)
    if person.minor_at(now) and not is_adult_on_record(db, rec.guardian_id, now):
        return FaceStatus(False, f"refused: {GUARDIAN_RULE}", rec)
    if rec.guardian_id is not None and guardian_lapsed(person.birth_month, now):
        return FaceStatus(False, f"suspended: {LAPSE_RULE}", rec)
    current = current_notice_version(db)
    if person.needs_renotice or (current is not None and rec.notice_version != current):
        changed = float(_kv_get(db, NOTICE_CHANGED_KEY) or now)
        if now >= changed + grace_days * 86400:
            return FaceStatus(False, f"suspended: {RENOTICE_RULE}", rec)
        return FaceStatus(True, "granted; re-notice pending (grace period)", rec)
    return FaceStatus(True, "granted", rec)


def require_consent(
    db: sqlite_utils.Database, person_id: str, *, grace_days: float = 30, now: float | None = None
) -> ConsentRecord:
    """Return the valid granted consent or raise :class:`ConsentError` naming the rule."""
    st = face_status(db, person_id, grace_days=grace_days, now=now)
    if not st.allowed or st.consent is None:
        raise ConsentError(f"person {person_id}: {st.reason}")
    return st.consent


def face_allowed(
    db: sqlite_utils.Database,
    *,
    grace_days: float = 30,
    clock: Callable[[], float] = time.time,
) -> Callable[[str], bool]:
    """A filter for :func:`gateway.privacy.vault.load_gallery`."""

    def allowed(person_id: str) -> bool:
        return face_status(db, person_id, grace_days=grace_days, now=clock()).allowed

    return allowed


def renotice_pending(db: sqlite_utils.Database) -> list[str]:
    """Ids of people flagged for re-notice (ask them again; declined people are never listed)."""
    return [r[0] for r in db.execute("SELECT id FROM people WHERE needs_renotice = 1 ORDER BY id")]


def may_sync(
    db: sqlite_utils.Database, person_id: str, *, grace_days: float = 30, now: float | None = None
) -> bool:
    """True when face use is allowed now and the consent scope is ``compound`` (sync ok)."""
    st = face_status(db, person_id, grace_days=grace_days, now=now)
    return st.allowed and st.consent is not None and st.consent.scope == "compound"


class _Removes(Protocol):
    def remove_person(self, person_id: str) -> int: ...


def enforce_renotice(
    db: sqlite_utils.Database,
    gallery: _Removes,
    *,
    grace_days: float = 30,
    now: float | None = None,
) -> list[str]:
    """Drop people whose re-notice grace period is over from the live gallery; return them.

    Their templates stay stored (suspended, not erased): consenting to the new notice and a
    gallery reload brings them back. Run it periodically (e.g. with the purge job).
    """
    now = time.time() if now is None else now
    dropped = []
    for pid in renotice_pending(db):
        if not face_status(db, pid, grace_days=grace_days, now=now).allowed:
            if gallery.remove_person(pid):
                log.info("person %s suspended from face matching: re-notice overdue", pid)
            dropped.append(pid)
    return dropped


def guardian_consent_lapsed(db: sqlite_utils.Database, now: float | None = None) -> list[str]:
    """People whose face use rests on a guardian's consent that lapsed at 14 (ask them)."""
    now = time.time() if now is None else now
    out = []
    for (pid,) in db.execute(
        "SELECT id FROM people WHERE birth_month IS NOT NULL ORDER BY id"
    ).fetchall():
        person = find_person(db, pid)
        rec = latest(db, pid)
        if (
            person is not None
            and rec is not None
            and rec.status == "granted"
            and rec.guardian_id is not None
            and guardian_lapsed(person.birth_month, now)
        ):
            out.append(str(pid))
    return out
