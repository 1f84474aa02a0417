"""What the office's roster says about one person at one gate (an *entry*), and whether a
change of entry takes something away (an *erasure*: applied first, watched for acks).

An entry holds no name, unit, phone, birth month or office person id: role, access group,
validity, card keyed hashes, PIN hashes (with the site-keyed index), the consent status and
scope, and the face templates when the consent allows them at that gate: untransformed
(``"space": "raw"``, taken back out of the office's own orthogonal transform), since the
change is sealed for that one gate, which applies its own template protection (its gates
key's transform): the office never holds a gate's template-transform key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlite_utils

from gateway.privacy import consent
from gateway.privacy.people import find_person
from gateway.privacy.roster_crypto import RosterError, b64, canonical
from gateway.privacy.vault import SiteTransform, Vault

#: ``face["space"]`` of an entry: untransformed embeddings (each gate applies its transform).
RAW_SPACE = "raw"


@dataclass(frozen=True)
class PersonFacts:
    """One person's roster facts at the office, shared by every gate's entry."""

    base: dict[str, Any]
    gates: set[str] | None  # None: every gate
    face_gates: set[str] | None  # None: every gate the person may use
    face: dict[str, Any] | None


def _templates(db: sqlite_utils.Database, vault: Vault, person_id: str) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT DISTINCT model FROM templates WHERE person_id = ? LIMIT 1", [person_id]
    ).fetchone()
    if row is None:
        return None
    if not isinstance(vault.site, SiteTransform):  # refused in the config too
        raise RosterError("the office's templates must be orthogonal (invertible) to be sent")
    stored = vault.load_person(db, person_id)
    if not len(stored):
        return None
    raw = np.ascontiguousarray(vault.site.invert(stored), dtype="<f4").tobytes()
    return {
        "space": RAW_SPACE,
        "model": str(row[0]),
        "count": len(stored),
        "dim": int(stored.shape[1]),
        "data": b64(raw),
        "digest": hashlib.sha256(raw).hexdigest(),
    }


def person_facts(
    db: sqlite_utils.Database, vault: Vault, person_id: str, *, grace_days: float, now: float
) -> PersonFacts | None:
    """The facts of ``person_id``, None when the person is not on record (deleted)."""
    person = find_person(db, person_id)
    if person is None:
        return None
    cards = sorted(
        bytes(r[0]).hex()
        for r in db.execute(
            "SELECT card_hmac FROM cards WHERE person_id = ? AND revoked_at IS NULL", [person_id]
        )
    )
    pins = [
        {"hash": r[0], "index": int(r[1]), "kind": r[2], "expires": r[3], "uses": r[4]}
        for r in db.execute(
            "SELECT pin_hash, pin_index, kind, expires_at, uses_left FROM pins"
            " WHERE person_id = ? AND revoked_at IS NULL ORDER BY id",
            [person_id],
        )
    ]
    rec = consent.latest(db, person_id)
    cons = None
    if rec is not None:
        cons = {
            "status": rec.status,
            "scope": rec.scope,
            "notice_version": rec.notice_version,
            "notice_sha256": rec.notice_sha256,
            "at": rec.created_at,
        }
    base = {
        "role": person.role,
        "group": person.access_group,
        "from": person.valid_from,
        "until": person.valid_until,
        "cards": cards,
        "pins": pins,
        "consent": cons,
    }
    pid = [person_id]
    gates = {r[0] for r in db.execute("SELECT gate FROM roster_access WHERE person_id = ?", pid)}
    face_rows = {
        r[0] for r in db.execute("SELECT gate FROM roster_face_gates WHERE person_id = ?", pid)
    }
    status = consent.face_status(db, person_id, grace_days=grace_days, now=now)
    face = _templates(db, vault, person_id) if status.allowed else None
    face_gates: set[str] | None = None if rec is not None and rec.scope == "compound" else face_rows
    return PersonFacts(base, gates or None, face_gates, face)


def entry_for(facts: PersonFacts | None, gate: str) -> dict[str, Any] | None:
    """The person's entry at ``gate``; None when they may not use it (or are deleted)."""
    if facts is None or (facts.gates is not None and gate not in facts.gates):
        return None
    entry = dict(facts.base)
    allowed = facts.face_gates is None or gate in facts.face_gates
    entry["face"] = facts.face if allowed else None
    return entry


def summary(entry: dict[str, Any]) -> dict[str, Any]:
    """What the office keeps of an entry sent (no template): to tell the next change."""
    out = {k: v for k, v in entry.items() if k != "face"}
    face = entry.get("face")
    out["face"] = face["digest"] if face else None
    return out


def summary_hash(summ: dict[str, Any]) -> str:
    """Hash of a summary: equal hashes, nothing to send."""
    return hashlib.sha256(canonical(summ)).hexdigest()


def is_erasure(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """True when going from ``old`` to ``new`` takes something away: the person, their
    face data, a card, a PIN, consent, or validity (a later start or an earlier end)."""
    if old is None:
        return False
    if new is None:
        return True
    if old.get("face") and new.get("face") != old.get("face"):
        return True
    if set(old["cards"]) - set(new["cards"]):
        return True
    if {p["hash"] for p in old["pins"]} - {p["hash"] for p in new["pins"]}:
        return True
    if (
        old.get("consent") != new.get("consent")
        and (new.get("consent") or {}).get("status") != "granted"
    ):
        return True
    if old["group"] != new["group"] or old["role"] != new["role"]:
        return True
    if new["until"] is not None and (old["until"] is None or new["until"] < old["until"]):
        return True
    return new["from"] is not None and (old["from"] is None or new["from"] > old["from"])
