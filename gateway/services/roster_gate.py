"""A gate follows the office's roster: verify, then apply, in order, in one transaction.

:func:`verify` checks everything before anything is written: the manifest's Ed25519
signature (a trusted office key), its site and gate, its version against the one applied
(an older one is a replay; the same one must carry the same head), the change stream
(every version from the one applied up to the manifest's, once each, in order: a gap, a
duplicate or a reordering is refused), each change's decryption with this gate's key (one
sealed for another gate does not open) and the hash chain up to the signed head (a
truncated stream never reaches it). Only then :func:`apply` writes: the changes collapse to
the latest per person, erasures first (a person any change of the batch erased something
of: the live gallery and the credential cache forget before the transaction, and a face
kept unchanged returns to the gallery after it), all in one transaction with the new
version. A refusal is audited
(``roster.rejected``) and changes nothing: the gate keeps its last good version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.errors import GatewayError
from gateway.keys import Purpose
from gateway.privacy import audit
from gateway.privacy.roster_crypto import (
    FORMAT,
    RosterError,
    canonical,
    change_aad,
    gate_ack_private,
    genesis,
    link,
    open_sealed,
    sign_manifest,
    snapshot_aad,
    unb64,
    unwrap_local,
    verify_manifest,
    wrap_local,
)
from gateway.privacy.vault import GalleryLike, Vault
from gateway.services.roster_apply import apply_entries
from gateway.store.kv import put_kv
from gateway.store.tx import transaction

if TYPE_CHECKING:
    from gateway.credentials.store import Credentials
    from gateway.services.cache_state import CacheState

log = logging.getLogger(__name__)

CARD_KEY_KV = "roster.card_key"
#: The site and PIN-index keys the roster sent and the gate has not adopted yet (sealed).
PENDING_KEYS_KV = "roster.pending_keys"
#: The last site key a gate that cannot adopt here was sent and did not use (its id).
UNADOPTED_KV = "roster.unadopted_site_key"


@dataclass(frozen=True)
class GateDeps:
    """What applying the roster needs on a gate."""

    db: sqlite_utils.Database
    vault: Vault
    gallery: GalleryLike
    device_root: bytes = field(repr=False)
    site: str
    gate: str
    trusted: dict[str, str]
    credentials: Credentials | None = None
    cache: CacheState | None = None
    clock: Callable[[], float] = time.time
    #: the keys carried over rotations (``Keys.carried``): the layers this gate's card and
    #: PIN-index rotations put over the stored values, which roster values are stored under
    carried: Mapping[Purpose, bytes] = field(default_factory=dict, repr=False)
    #: adopt the site key and the PIN-index key the roster carries (True when adopted: the
    #: gate restarts with them; :func:`gateway.services.site_rotation.adopt_from_roster`)
    adopt_keys: Callable[[bytes, bytes | None], bool] | None = None
    #: what the gate's acks say of its site key: ``id`` (its fingerprint), ``adopts``
    #: (whether it can adopt a new one: the office rotates only when every gate can) and
    #: ``why`` not (:func:`gateway.gate.roster_wiring.site_key_status`)
    site_key: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Verified:
    """A manifest and its change stream, checked: what :func:`apply` writes."""

    version: int
    head: str
    snapshot: dict[str, Any] | None  # roster id -> entry, the whole roster at ``base``
    base: int
    changes: list[dict[str, Any]]


def state(db: sqlite_utils.Database, site: str, gate: str) -> tuple[int, str]:
    """The version applied here and its chain head (0 and the genesis hash before any)."""
    row = db.execute("SELECT version, head FROM roster_state WHERE id = 1").fetchone()
    return (0, genesis(site, gate)) if row is None else (int(row[0]), str(row[1]))


def applied(db: sqlite_utils.Database) -> tuple[int, float | None]:
    """The version applied here and when (0 and None before the first roster)."""
    row = db.execute("SELECT version, applied_at FROM roster_state WHERE id = 1").fetchone()
    return (0, None) if row is None else (int(row[0]), float(row[1]))


def _private(deps: GateDeps) -> X25519PrivateKey:
    from gateway.privacy.roster_crypto import gate_private

    return gate_private(deps.device_root)


def check_manifest(deps: GateDeps, payload: bytes) -> dict[str, Any]:
    """The manifest, signature and addressing verified; RosterError otherwise."""
    try:
        doc = json.loads(payload)
    except ValueError as exc:
        raise RosterError("roster manifest is not JSON") from exc
    doc = verify_manifest(doc, deps.trusted)
    if doc.get("format") != FORMAT or doc.get("site") != deps.site or doc.get("gate") != deps.gate:
        raise RosterError(
            f"roster manifest is for {doc.get('site')}/{doc.get('gate')}, not this gate"
        )
    if not isinstance(doc.get("version"), int) or not isinstance(doc.get("head"), str):
        raise RosterError("roster manifest has no version or head")
    return doc


def needed(deps: GateDeps, manifest: dict[str, Any]) -> tuple[list[int], bool]:
    """The chunk firsts to fetch and whether the snapshot is needed. RosterError for a
    replayed older version or a different head at the same version."""
    cur, hd = state(deps.db, deps.site, deps.gate)
    version = int(manifest["version"])
    if version < cur:
        raise RosterError(f"roster version {version} is older than the applied {cur} (replayed)")
    if version == cur:
        if manifest["head"] != hd:
            raise RosterError(f"roster version {version} has another head than the applied one")
        return [], False
    chunks = [(int(f), int(last)) for f, last in manifest.get("chunks") or []]
    covered = [c for c in chunks if c[1] > cur]
    snap = manifest.get("snapshot")
    if covered and covered[0][0] <= cur + 1:
        return [f for f, _ in covered], False
    if isinstance(snap, dict) and int(snap.get("version", -1)) >= cur:
        return [f for f, last in covered if last > int(snap["version"])], True
    raise RosterError(
        f"roster changes after version {cur} are no longer retained and there is no snapshot"
    )


def verify(
    deps: GateDeps,
    manifest: dict[str, Any],
    chunks: dict[int, bytes],
    snapshot_parts: list[bytes] | None,
) -> Verified:
    """The change stream up to the manifest's head, checked (see the module docstring)."""
    cur, hd = state(deps.db, deps.site, deps.gate)
    base = cur
    private = _private(deps)
    snapshot = None
    if snapshot_parts is not None:
        cur, hd, snapshot = _open_snapshot(deps, private, manifest, snapshot_parts)
    version = int(manifest["version"])
    changes = []
    expected = cur + 1
    for first, last in [(int(f), int(la)) for f, la in manifest.get("chunks") or []]:
        if last < expected:
            continue
        if first not in chunks:
            raise RosterError(f"roster chunk {first} named by the manifest did not arrive")
        for item in _chunk_items(deps, chunks[first], first, last):
            v = item.get("v")
            if not isinstance(v, int):
                raise RosterError(f"roster chunk {first} holds a change without a version")
            if v <= cur:
                continue  # applied already (a chunk that overlaps the applied version)
            if v < expected:
                raise RosterError(f"roster change {v} duplicated in the stream")
            if v > expected:
                raise RosterError(
                    f"roster change {expected} missing before {v} (truncated or reordered)"
                )
            plain = open_sealed(
                private,
                deps.gate,
                unb64(item.get("c"), "change"),
                change_aad(deps.site, deps.gate, v),
            )
            change = _change_of(plain, v)
            hd = link(hd, change)
            changes.append(change)
            expected += 1
    if expected - 1 != version:
        raise RosterError(
            f"roster stream ends at version {expected - 1}, the manifest names {version} "
            "(truncated)"
        )
    if hd != manifest["head"]:
        raise RosterError("roster chain does not reach the signed head (altered stream)")
    return Verified(version, hd, snapshot, base, changes)


def _change_of(plain: bytes, v: int) -> dict[str, Any]:
    """A decrypted change, its shape checked; RosterError otherwise."""
    try:
        change = json.loads(plain)
    except ValueError as exc:
        raise RosterError(f"roster change {v} is not JSON") from exc
    if (
        not isinstance(change, dict)
        or change.get("v") != v
        or change.get("op") not in ("put", "drop", "keys")
        or not isinstance(change.get("rid"), str)
        or not isinstance(change.get("erasure"), bool)
        or not isinstance(change.get("entry"), dict | None)
    ):
        raise RosterError(f"roster change {v} is malformed")
    return change


def _chunk_items(deps: GateDeps, payload: bytes, first: int, last: int) -> list[dict[str, Any]]:
    try:
        doc = json.loads(payload)
    except ValueError as exc:
        raise RosterError(f"roster chunk {first} is not JSON") from exc
    if not isinstance(doc, dict) or doc.get("gate") != deps.gate:
        raise RosterError(f"roster chunk {first} is not addressed to this gate")
    if doc.get("first") != first or doc.get("last") != last:
        raise RosterError(f"roster chunk {first} does not hold the versions the manifest names")
    items = doc.get("changes")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise RosterError(f"roster chunk {first} has no change list")
    return items


def _open_snapshot(
    deps: GateDeps, private: X25519PrivateKey, manifest: dict[str, Any], parts: list[bytes]
) -> tuple[int, str, dict[str, Any]]:
    info = manifest.get("snapshot")
    sealed = b"".join(parts)
    if not isinstance(info, dict) or not isinstance(info.get("version"), int):
        raise RosterError("roster manifest names no valid snapshot")
    if len(parts) != info.get("parts") or hashlib.sha256(sealed).hexdigest() != info.get("sha256"):
        raise RosterError("roster snapshot is incomplete or altered (hash mismatch)")
    aad = snapshot_aad(deps.site, deps.gate, info["version"])
    doc = json.loads(open_sealed(private, deps.gate, sealed, aad))
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
        raise RosterError("roster snapshot is malformed")
    if doc.get("version") != info["version"] or doc.get("head") != info.get("head"):
        raise RosterError("roster snapshot does not hold the version the manifest names")
    return int(doc["version"]), str(doc["head"]), doc


def apply(deps: GateDeps, checked: Verified) -> dict[str, int]:
    """Write a verified stream: one transaction, erasures first; return counts."""
    db, now = deps.db, deps.clock()
    latest, erasing, sent = _collapse(db, checked)
    card_key = sent.get("ck")
    ordered = sorted(latest.values(), key=lambda c: c["rid"] not in erasing)
    for rid in sorted(erasing):  # fail closed in memory first, as the services do
        deps.gallery.remove_person(rid)
        if deps.credentials is not None:
            deps.credentials.forget_cards(rid)
            deps.credentials.forget_pins(rid)
        if deps.cache is not None:
            deps.cache.note_change(rid)
    with transaction(db):
        counts, faces = apply_entries(db, deps.vault, ordered, now=now, carried=deps.carried)
        if card_key:
            _store_card_key(deps, unb64(card_key, "card key"))
        if sent.get("sk") and deps.adopt_keys is not None:  # adopted after the commit;
            _store_pending(deps, sent)  # kept until adopted (a crash, a failure: retried)
        elif sent.get("sk"):
            _note_unadopted(deps, unb64(sent["sk"], "site key"), now)
        db.execute(
            "INSERT OR REPLACE INTO roster_state (id, version, head, applied_at)"
            " VALUES (1, ?, ?, ?)",
            [checked.version, checked.head, now],
        )
        audit.append(
            db,
            "roster",
            "roster.applied",
            deps.gate,
            {"from": checked.base, "to": checked.version, **counts},
            now=now,
        )
    _after_commit(deps, faces, erasing)
    log.info("roster: version %d applied (%s)", checked.version, counts)
    counts["site_key"] = int(adopt_pending(deps))
    return counts


def _store_pending(deps: GateDeps, sent: Mapping[str, Any]) -> None:
    """The site and PIN-index keys the roster sent, sealed under this gate's roster wrap
    key, in the roster's transaction: :func:`adopt_pending` adopts them after it."""
    doc = {"sk": sent["sk"], "pk": sent.get("pk")}
    put_kv(deps.db, PENDING_KEYS_KV, wrap_local(deps.device_root, canonical(doc), PENDING_KEYS_KV))


def _note_unadopted(deps: GateDeps, site_key: bytes, now: float) -> None:
    """A gate that cannot adopt keys here (followed without the daemon) was sent a site
    key it does not use: audited once per key (``keys.adopt_failed``)."""
    from gateway.keys import key_id

    kid = key_id(site_key)
    if deps.site_key is None or deps.site_key.get("id") == kid:
        return
    seen = deps.db.execute("SELECT value FROM kv WHERE key = ?", [UNADOPTED_KV]).fetchone()
    if seen is not None and seen[0] == kid:
        return
    put_kv(deps.db, UNADOPTED_KV, kid)
    why = f"the roster sent site key {kid}, not adopted: {deps.site_key.get('why')}"
    log.error("roster: %s", why)
    audit.append(deps.db, "roster", "keys.adopt_failed", deps.gate, {"error": why}, now=now)


def adopt_pending(deps: GateDeps) -> bool:
    """Adopt the keys the roster sent (:func:`_store_pending`), once the roster's entries
    have committed; True when adopted now (the gate restarts with them). The record stays
    until there is nothing left to adopt, so a crash or a failure is retried after the next
    roster and at the start. A failure is audited (``keys.adopt_failed``) and never undoes
    the roster; a database error is raised (the session retries)."""
    row = deps.db.execute("SELECT value FROM kv WHERE key = ?", [PENDING_KEYS_KV]).fetchone()
    if row is None:
        return False
    if deps.adopt_keys is None:  # recorded by a run that could adopt: not this one
        _drop_pending(deps)
        return False
    try:
        doc = json.loads(unwrap_local(deps.device_root, row[0], PENDING_KEYS_KV))
        pin = unb64(doc["pk"], "PIN-index key") if doc.get("pk") else None
        adopted = deps.adopt_keys(unb64(doc["sk"], "site key"), pin)
    except sqlite3.Error:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure: audited, the roster stays applied
        why = f"the site key the roster sent was not adopted: {type(exc).__name__}: {exc}"
        log.error("roster: %s", why)
        with contextlib.suppress(Exception), transaction(deps.db):
            audit.append(deps.db, "roster", "keys.adopt_failed", deps.gate, {"error": why})
        if isinstance(exc, GatewayError):  # refused (a retired key, a credential): for good
            _drop_pending(deps)  # (the next roster sends the keys again)
        return False
    if not adopted:  # in use already: nothing left to adopt
        _drop_pending(deps)
    return adopted


def _drop_pending(deps: GateDeps) -> None:
    with transaction(deps.db):
        deps.db.execute("DELETE FROM kv WHERE key = ?", [PENDING_KEYS_KV])


def _collapse(
    db: sqlite_utils.Database, checked: Verified
) -> tuple[dict[str, dict[str, Any]], set[str], dict[str, Any]]:
    """The latest change per person, the people any change of the batch erased something
    of (an erasure followed by another change of the same person is still an erasure),
    and the newest keys sent (``ck``: card, ``sk``: site, ``pk``: PIN index)."""
    latest: dict[str, dict[str, Any]] = {}
    erasing: set[str] = set()
    sent: dict[str, Any] = {}
    if checked.snapshot is not None:  # a snapshot: every person's record is rewritten
        entries = checked.snapshot["entries"]
        members = [r[0] for r in db.execute("SELECT person_id FROM roster_members")]
        for rid in members:
            if rid not in entries:
                latest[rid] = {"op": "drop", "rid": rid, "erasure": True, "entry": None}
        for rid, entry in entries.items():
            latest[rid] = {"op": "put", "rid": rid, "erasure": True, "entry": entry}
        erasing.update(latest)
        sent = {k: checked.snapshot[k] for k in _KEYS if checked.snapshot.get(k)}
    for change in checked.changes:
        sent |= {k: change[k] for k in _KEYS if change.get(k)}
        if change["op"] == "keys":  # no person in it
            continue
        latest[change["rid"]] = change
        if change.get("erasure"):
            erasing.add(change["rid"])
    return latest, erasing, sent


#: The keys a change or snapshot may carry (``OfficeDeps.key_fields`` at the office).
_KEYS = ("ck", "sk", "pk")


def _after_commit(deps: GateDeps, faces: dict[str, np.ndarray], erased: set[str]) -> None:
    """The new faces into the live gallery, and the faces of people removed from it before
    the transaction (an erasure of a card or a PIN, a snapshot) whose templates are kept
    unchanged back in it (nothing else would: the data version did not move)."""
    from gateway.privacy.consent import face_status

    db, now = deps.db, deps.clock()
    for rid, tpl in faces.items():
        if face_status(db, rid, now=now).allowed:
            deps.gallery.replace_person(rid, tpl)
    for rid in sorted(erased - set(faces)):
        if deps.vault.has_face_data(db, rid) and face_status(db, rid, now=now).allowed:
            deps.gallery.replace_person(rid, deps.vault.load_person(db, rid))
    if deps.credentials is not None:
        key = load_card_key(deps.db, deps.device_root)
        if key is not None:  # the cache follower reloads the changed rows
            deps.credentials.add_card_key(key)


def _store_card_key(deps: GateDeps, key: bytes) -> None:
    if load_card_key(deps.db, deps.device_root) == key:
        return
    put_kv(deps.db, CARD_KEY_KV, wrap_local(deps.device_root, key, CARD_KEY_KV))


def load_card_key(db: sqlite_utils.Database, device_root: bytes) -> bytes | None:
    """The office's card lookup key as this gate keeps it (None before the first roster)."""
    row = db.execute("SELECT value FROM kv WHERE key = ?", [CARD_KEY_KV]).fetchone()
    return None if row is None else unwrap_local(device_root, row[0], CARD_KEY_KV)


def reject(deps: GateDeps, error: RosterError) -> None:
    """Audit a refused roster message (the gate keeps its last good version)."""
    log.error("roster: refused: %s", error)
    try:
        with transaction(deps.db):
            audit.append(deps.db, "roster", "roster.rejected", deps.gate, {"error": str(error)})
    except Exception:
        log.exception("roster: the refusal could not be audited")


def ack_payload(deps: GateDeps, error: str | None = None) -> bytes:
    """The retained acknowledgement: version applied, its head, when (no identity), signed
    with this gate's ack key (the office refuses an unsigned or forged one)."""
    version, hd = state(deps.db, deps.site, deps.gate)
    row = deps.db.execute("SELECT applied_at FROM roster_state WHERE id = 1").fetchone()
    doc: dict[str, Any] = {
        "format": FORMAT,
        "site": deps.site,
        "gate": deps.gate,
        "version": version,
        "head": hd,
        "applied_at": row[0] if row else None,
    }
    if deps.site_key is not None:
        doc["site_key"] = dict(deps.site_key)
    if error:
        doc["error"] = error[:300]
    return canonical(sign_manifest(doc, gate_ack_private(deps.device_root)))
