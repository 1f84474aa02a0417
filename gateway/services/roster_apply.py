"""The writes of one roster batch on a gate (inside the caller's transaction).

A ``put`` makes the gate's record of a roster person (opaque roster id, no name or unit)
equal to the entry: role, group, validity, cards (keyed hashes: the missing are revoked),
PINs (hashes: the missing are revoked), consent, face templates (untransformed from the
office: this gate's vault applies its own template protection; erased when the entry has
none). A ``drop`` erases every trace: face data, cards, PINs, consents, lockouts and the
record. Both are audited by roster id only.

The office sends card hashes and PIN indexes as it computed them; this gate stores them
under the layers its own card and PIN-index rotations put over its stored values
(:func:`gateway.keys.layers`), as such a rotation left the values stored before it, so
they are looked up (and compared at the next ``put``) like every other row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import sqlite_utils

from gateway.keys import Purpose, layers, rekey_card, rekey_pin_index
from gateway.privacy import audit
from gateway.privacy.consent import latest
from gateway.privacy.people import find_person
from gateway.privacy.roster_crypto import RosterError, unb64
from gateway.privacy.scrub import mark_pending
from gateway.privacy.vault import Vault
from gateway.services.roster_entries import RAW_SPACE

ACTOR = "roster"


def apply_entries(
    db: sqlite_utils.Database,
    vault: Vault,
    ordered: list[dict[str, Any]],
    *,
    now: float,
    carried: Mapping[Purpose, bytes],
) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Apply ``ordered`` (erasures first); counts by kind and the new faces to match.
    ``carried``: this gate's carried keys (the rotation layers of cards and PIN indexes)."""
    card_layers = layers(carried, Purpose.CARD_LOOKUP)
    pin_layers = layers(carried, Purpose.PIN_INDEX)
    counts = {"put": 0, "drop": 0, "faces_erased": 0, "faces_stored": 0}
    faces: dict[str, np.ndarray] = {}
    for change in ordered:
        rid = str(change["rid"])
        if change["op"] == "drop":
            counts["drop"] += 1
            counts["faces_erased"] += _drop(db, vault, rid, now)
            continue
        counts["put"] += 1
        entry = change.get("entry")
        if not isinstance(entry, dict):
            raise RosterError("a roster put has no entry")
        _person(db, rid, entry, now)
        _cards(db, rid, entry.get("cards") or [], card_layers, now)
        _pins(db, rid, entry.get("pins") or [], pin_layers, now)
        _consent(db, rid, entry.get("consent"), now)
        erased, tpl = _face(db, vault, rid, entry.get("face"), now)
        counts["faces_erased"] += erased
        if tpl is not None:
            faces[rid] = tpl
            counts["faces_stored"] += 1
    return counts, faces


def _drop(db: sqlite_utils.Database, vault: Vault, rid: str, now: float) -> int:
    if find_person(db, rid) is None:
        return 0
    erased = vault.erase_person(db, rid, vacuum=False)
    db.execute("DELETE FROM lockouts WHERE scope = 'person' AND subject = ?", [rid])
    db.execute("DELETE FROM people WHERE id = ?", [rid])  # cascades: cards, PINs, consents
    mark_pending(db, now)
    audit.append(
        db, ACTOR, "person.delete", rid, {"reason": "roster", "templates_erased": erased}, now=now
    )
    return 1 if erased else 0


def _person(db: sqlite_utils.Database, rid: str, e: dict[str, Any], now: float) -> None:
    values = [
        e.get("role") or "resident",
        e.get("group") or "residents",
        e.get("from"),
        e.get("until"),
    ]
    if find_person(db, rid) is None:
        db.execute(
            "INSERT INTO people (id, display_name, unit, role, access_group, valid_from,"
            " valid_until, is_minor, created_at) VALUES (?, '', '', ?, ?, ?, ?, 0, ?)",
            [rid, *values, now],
        )
        audit.append(db, ACTOR, "person.add", rid, {"source": "roster"}, now=now)
    else:
        db.execute(
            "UPDATE people SET role = ?, access_group = ?, valid_from = ?, valid_until = ?"
            " WHERE id = ?",
            [*values, rid],
        )
    db.execute("INSERT OR IGNORE INTO roster_members (person_id) VALUES (?)", [rid])


def _cards(
    db: sqlite_utils.Database, rid: str, cards: list[str], over: list[bytes], now: float
) -> None:
    want = {rekey_card(bytes.fromhex(c), over) for c in cards}
    active = {
        bytes(r[0])
        for r in db.execute(
            "SELECT card_hmac FROM cards WHERE person_id = ? AND revoked_at IS NULL", [rid]
        )
    }
    for digest in active - want:
        db.execute("UPDATE cards SET revoked_at = ? WHERE card_hmac = ?", [now, digest])
    for digest in want - active:
        db.execute("DELETE FROM cards WHERE card_hmac = ?", [digest])
        db.execute(
            "INSERT INTO cards (person_id, card_hmac, created_at) VALUES (?, ?, ?)",
            [rid, digest, now],
        )
    if active != want:
        audit.append(
            db,
            ACTOR,
            "card.roster",
            rid,
            {"revoked": len(active - want), "added": len(want - active)},
            now=now,
        )


def _pins(
    db: sqlite_utils.Database, rid: str, pins: list[dict[str, Any]], over: list[bytes], now: float
) -> None:
    want = {str(p["hash"]): p for p in pins}
    active = {
        str(r[0])
        for r in db.execute(
            "SELECT pin_hash FROM pins WHERE person_id = ? AND revoked_at IS NULL", [rid]
        )
    }
    for h in active - set(want):
        db.execute(
            "UPDATE pins SET revoked_at = ? WHERE person_id = ? AND pin_hash = ?", [now, rid, h]
        )
    for h in set(want) - active:
        p = want[h]
        db.execute(
            "INSERT INTO pins (person_id, pin_hash, pin_index, kind, expires_at, uses_left,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                rid,
                h,
                rekey_pin_index(int(p["index"]), over),
                p.get("kind") or "normal",
                p.get("expires"),
                p.get("uses"),
                now,
            ],
        )
    if active != set(want):
        audit.append(
            db,
            ACTOR,
            "pin.roster",
            rid,
            {"revoked": len(active - set(want)), "added": len(set(want) - active)},
            now=now,
        )


def _consent(db: sqlite_utils.Database, rid: str, c: dict[str, Any] | None, now: float) -> None:
    if c is None:
        return
    rec = latest(db, rid)
    same = rec is not None and (
        rec.status,
        rec.scope,
        rec.notice_version,
        rec.notice_sha256,
    ) == (c["status"], c["scope"], c["notice_version"], c["notice_sha256"])
    if same:
        return
    db.execute(
        "INSERT INTO consents (person_id, purpose, status, notice_version, notice_sha256,"
        " method, recorded_by, scope, created_at)"
        " VALUES (?, 'face_processing', ?, ?, ?, 'roster', 'roster', ?, ?)",
        [rid, c["status"], c["notice_version"], c["notice_sha256"], c["scope"], now],
    )
    audit.append(
        db, ACTOR, f"consent.{c['status']}", rid, {"method": "roster", "scope": c["scope"]}, now=now
    )


def _face(
    db: sqlite_utils.Database, vault: Vault, rid: str, face: dict[str, Any] | None, now: float
) -> tuple[int, np.ndarray | None]:
    row = db.execute("SELECT face_digest FROM roster_members WHERE person_id = ?", [rid]).fetchone()
    digest = row[0] if row else None
    if face is None:
        if not vault.has_face_data(db, rid):
            return 0, None
        n = vault.erase_person(db, rid, vacuum=False)
        db.execute("UPDATE roster_members SET face_digest = NULL WHERE person_id = ?", [rid])
        audit.append(db, ACTOR, "template.delete", rid, {"reason": "roster", "count": n}, now=now)
        return 1, None
    if digest == face.get("digest") and vault.has_face_data(db, rid):
        return 0, None
    raw = unb64(face.get("data"), "templates")
    count, dim = int(face["count"]), int(face["dim"])
    untransformed = face.get("space") == RAW_SPACE  # else an office from before: gates' space
    if dim != (vault.site.in_dim if untransformed else vault.dim) or len(raw) != count * dim * 4:
        raise RosterError("roster templates have the wrong shape")
    tpl = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(count, dim)
    store = vault.store_templates if untransformed else vault.store_site_templates
    site = store(db, rid, tpl, model=str(face["model"]))  # raw: this gate's own transform
    db.execute(
        "UPDATE roster_members SET face_digest = ? WHERE person_id = ?", [face["digest"], rid]
    )
    audit.append(db, ACTOR, "template.create", rid, {"source": "roster", "count": count}, now=now)
    return 0, site
