"""The office's roster: people's changes become hash-chained, per-gate encrypted versions.

The office's services (people, consent, credentials, enrolment, withdrawal, deletion) are
not edited: triggers on their tables mark the person changed (``roster_dirty``, whoever
writes: the CLI, the daemon, the web console), and :func:`reconcile` turns each marked
person into at most one change per gate whose entry differs from what the gate was last
sent. Each change gets the gate's next version and chain hash and is sealed for that gate
at once, so the office database holds no template in clear outside its vault.
Publication (what to put on the broker) is :mod:`gateway.services.roster_publish`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from gateway.config.root import GatewayConfig
from gateway.keys import Keys, Purpose, ed25519_key_id
from gateway.privacy import audit
from gateway.privacy.notice import Notice
from gateway.privacy.roster_crypto import (
    FORMAT,
    RosterError,
    Sealer,
    b64,
    canonical,
    change_aad,
    genesis,
    link,
    load_ack_public,
    load_gate_public,
    roster_id_key,
    roster_id_with,
    verify_manifest,
)
from gateway.privacy.vault import Vault
from gateway.services.roster_entries import (
    entry_for,
    is_erasure,
    person_facts,
    summary,
    summary_hash,
)
from gateway.store.kv import put_kv
from gateway.store.tx import transaction

log = logging.getLogger(__name__)

CHANGE_SEQ = "roster.change_seq"
#: kv prefix marking a gate name removed from the roster (``remove_gate``).
REMOVED_KV = "roster.removed."
#: kv prefix: a removed gate's retained topics not cleared on the broker yet (JSON list).
CLEAR_KV = "roster.clear."
BATCH = 200  # people per transaction


@dataclass(frozen=True)
class OfficeDeps:
    """What the office's roster needs: its database and vault, its device root (roster ids),
    its card lookup key (sent to the gates so the cards it hashed match there), the site."""

    db: sqlite_utils.Database
    vault: Vault
    device_root: bytes = field(repr=False)
    card_key: bytes = field(repr=False)
    site: str
    grace_days: float = 30.0
    clock: Callable[[], float] = time.time
    #: the site key and the site's PIN-index key, sent with every change and snapshot so
    #: every gate adopts them after a site-key rotation (none: not sent)
    site_key: bytes = field(default=b"", repr=False)
    pin_index_key: bytes = field(default=b"", repr=False)

    def key_fields(self) -> dict[str, str]:
        """What every change and snapshot carries for the gate: the card lookup key
        (``ck``), and the site and PIN-index keys (``sk``, ``pk``) when set."""
        out = {"ck": b64(self.card_key)}
        if self.site_key:
            out |= {"sk": b64(self.site_key), "pk": b64(self.pin_index_key)}
        return out


def office_deps(
    cfg: GatewayConfig, keys: Keys, db: sqlite_utils.Database, vault: Vault
) -> OfficeDeps:
    """The office's roster dependencies from its configuration and keys."""
    return OfficeDeps(
        db,
        vault,
        keys.roster_root,
        keys.subkey(Purpose.CARD_LOOKUP),
        cfg.site.id,
        grace_days=cfg.privacy.renotice_grace_days,
        site_key=keys.site,
        pin_index_key=keys.pin_index_site,
    )


NO_ACK_KEY = (
    "gate {gate} has no acknowledgement key registered (registered before acks were "
    "signed): its acks are refused until it is; run `gateway roster gate-key` on the gate "
    "and `gateway roster add-gate {gate} <x25519 key> <ack key>` here (or set "
    "roster.gates.{gate}.ack_key)"
)


def add_gate(
    db: sqlite_utils.Database,
    name: str,
    public_key: str,
    *,
    actor: str,
    ack_key: str | None = None,
) -> bool:
    """Register (or re-key) a gate: its X25519 key and the Ed25519 key that signs its acks
    (kept when only the ack key is omitted for the same X25519 key; dropped on a re-key).
    A new or re-keyed gate has every person reconciled for it. True when new."""
    load_gate_public(public_key)  # RosterError for a bad key
    if ack_key is not None:
        load_ack_public(ack_key)
    if db.execute("SELECT 1 FROM kv WHERE key = ?", [REMOVED_KV + name]).fetchone():
        raise RosterError(
            f"gate {name!r} was removed from the roster: register its replacement under a "
            "new name (a new database and keys on the gate)"
        )
    now = time.time()
    with transaction(db):
        old = db.execute(
            "SELECT public_key, ack_key FROM roster_gates WHERE name = ?", [name]
        ).fetchone()
        rekey = old is not None and old[0] != public_key
        if ack_key is None and old is not None and not rekey:
            ack_key = old[1]
        if old is not None and (old[0], old[1]) == (public_key, ack_key):
            _warn_no_ack_key(name, ack_key)
            return False
        db.execute(
            "INSERT INTO roster_gates (name, public_key, added_at, ack_key) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET public_key = excluded.public_key,"
            " ack_key = excluded.ack_key",
            [name, public_key, now, ack_key],
        )
        if old is None or rekey:
            db.execute("INSERT OR IGNORE INTO roster_dirty SELECT id FROM people")
        detail = {"rekey": rekey, "ack_key": ack_key is not None}
        audit.append(db, actor, "roster.gate_add", name, detail, now=now)
    log.info("roster: gate %s registered", name)
    _warn_no_ack_key(name, ack_key)
    return old is None


def remove_gate(db: sqlite_utils.Database, name: str, *, actor: str) -> int:
    """Take a gate out of the roster (decommissioned, stolen, its storage leaked): nothing
    more is sealed or published for it (a later site-key rotation never reaches it), and
    what the office kept for it (changes, what it was sent, its acks and alerts) goes, and
    its retained messages are cleared from the broker by the office's agent
    (:func:`pending_clears`). Returns the changes dropped; RosterError for a gate not
    registered."""
    from gateway.services.roster_publish import MANIFEST_KV, SNAPSHOT_KV

    with transaction(db):
        if db.execute("SELECT 1 FROM roster_gates WHERE name = ?", [name]).fetchone() is None:
            raise RosterError(f"gate {name!r} is not registered")
        dropped = int(
            db.execute("SELECT count(*) FROM roster_changes WHERE gate = ?", [name]).fetchone()[0]
        )
        clear = ["manifest", "ack"] + [
            f"c/{r[0]}"
            for r in db.execute(
                "SELECT min(version) FROM roster_changes WHERE gate = ? AND retained = 1"
                " GROUP BY chunk",
                [name],
            )
        ]
        snap = db.execute("SELECT value FROM kv WHERE key = ?", [SNAPSHOT_KV + name]).fetchone()
        clear += [f"s/{i}" for i in range(int(json.loads(snap[0])["parts"]) if snap else 0)]
        for table in ("roster_changes", "roster_sent", "roster_acks", "roster_alerts"):
            db.execute(f"DELETE FROM {table} WHERE gate = ?", [name])  # noqa: S608 - constants
        db.execute("DELETE FROM roster_gates WHERE name = ?", [name])
        db.execute("DELETE FROM kv WHERE key IN (?, ?)", [SNAPSHOT_KV + name, MANIFEST_KV + name])
        put_kv(db, REMOVED_KV + name, "1")  # never registered again: its chain restarts
        put_kv(db, CLEAR_KV + name, json.dumps(clear))  # the agent clears its messages
        audit.append(db, actor, "roster.gate_remove", name, {"changes_dropped": dropped})
    log.warning("roster: gate %s removed: nothing more is sent to it", name)
    return dropped


def pending_clears(db: sqlite_utils.Database) -> dict[str, list[str]]:
    """The retained topics (suffixes) of removed gates still to be cleared on the broker."""
    rows = db.execute("SELECT key, value FROM kv WHERE key LIKE ?", [CLEAR_KV + "%"])
    return {str(k)[len(CLEAR_KV) :]: [str(t) for t in json.loads(v)] for k, v in rows}


def cleared(db: sqlite_utils.Database, gate: str) -> None:
    """A removed gate's retained topics were cleared (:func:`pending_clears`)."""
    with transaction(db):
        db.execute("DELETE FROM kv WHERE key = ?", [CLEAR_KV + gate])


def _warn_no_ack_key(name: str, ack_key: str | None) -> None:
    if ack_key is None:
        log.warning("roster: %s", NO_ACK_KEY.format(gate=name))


def ensure_gates(db: sqlite_utils.Database, gates: Mapping[str, tuple[str, str | None]]) -> None:
    """Register the configured gates (``roster.gates``: X25519 key, ack key) not yet."""
    for name, (key, ack_key) in gates.items():
        add_gate(db, name, key, actor="config", ack_key=ack_key)


def gate_keys(db: sqlite_utils.Database) -> dict[str, str]:
    """Every registered gate and its public key."""
    return {r[0]: r[1] for r in db.execute("SELECT name, public_key FROM roster_gates")}


def head(db: sqlite_utils.Database, site: str, gate: str) -> tuple[int, str]:
    """The gate's latest version and chain hash (0 and the genesis hash before any)."""
    row = db.execute(
        "SELECT version, hash FROM roster_changes WHERE gate = ? ORDER BY version DESC LIMIT 1",
        [gate],
    ).fetchone()
    return (0, genesis(site, gate)) if row is None else (int(row[0]), str(row[1]))


def _next_change_id(db: sqlite_utils.Database) -> int:
    row = db.execute("SELECT value FROM kv WHERE key = ?", [CHANGE_SEQ]).fetchone()
    n = (int(row[0]) if row else 0) + 1
    put_kv(db, CHANGE_SEQ, str(n))
    return n


def set_person_gates(
    db: sqlite_utils.Database, person_id: str, gates: list[str] | None, *, actor: str
) -> None:
    """The gates a person may use (None: every gate). Audited; reconciled at the next pass."""
    _set_rows(db, "roster_access", person_id, gates, actor=actor, action="roster.gates")


def set_face_gates(
    db: sqlite_utils.Database, person_id: str, gates: list[str], *, actor: str
) -> None:
    """The gates a consent of scope ``device`` sends the face to (narrowing the scope)."""
    _set_rows(db, "roster_face_gates", person_id, gates, actor=actor, action="roster.face_gates")


def narrow_face_scope(
    db: sqlite_utils.Database,
    notice: Notice,
    person_id: str,
    gates: list[str],
    *,
    actor: str,
    method: str = "paper",
) -> None:
    """Narrow a person's face consent to ``gates``: a consent of scope ``device`` on the
    notice in force (recorded like any grant), and the face goes to those gates only; the
    other gates erase it at their next roster version."""
    from gateway.privacy import consent

    set_face_gates(db, person_id, gates, actor=actor)
    rec = consent.latest(db, person_id)
    if rec is not None and rec.status == "granted" and rec.scope != "device":
        consent.answer(
            db,
            person_id,
            notice,
            status="granted",
            method=method,
            recorded_by=actor,
            scope="device",
            guardian_id=rec.guardian_id,
        )


def _set_rows(
    db: sqlite_utils.Database,
    table: str,
    person_id: str,
    gates: list[str] | None,
    *,
    actor: str,
    action: str,
) -> None:
    from gateway.privacy.people import get_person

    get_person(db, person_id)
    known = set(gate_keys(db))
    unknown = sorted(set(gates or []) - known)
    if unknown:
        raise RosterError(f"unknown gate(s) {', '.join(unknown)}: add them with roster add-gate")
    with transaction(db):
        db.execute(f"DELETE FROM {table} WHERE person_id = ?", [person_id])  # noqa: S608
        for g in sorted(set(gates or [])):
            db.execute(f"INSERT INTO {table} VALUES (?, ?)", [person_id, g])  # noqa: S608
        db.execute("INSERT OR IGNORE INTO roster_dirty VALUES (?)", [person_id])
        audit.append(db, actor, action, person_id, {"gates": sorted(set(gates or []))})


def reconcile(deps: OfficeDeps) -> int:
    """Every person marked changed becomes at most one change per gate; return how many
    changes were made. A batch of people is one transaction (marks cleared with it)."""
    db = deps.db
    total = 0
    while True:
        dirty = [r[0] for r in db.execute("SELECT person_id FROM roster_dirty LIMIT ?", [BATCH])]
        if not dirty:
            return total
        pass_ = _Pass(
            {g: load_gate_public(k) for g, k in gate_keys(db).items()},
            Sealer(),
            roster_id_key(deps.device_root),
        )
        with transaction(db):
            for pid in dirty:
                total += _reconcile_person(deps, pid, pass_)
                db.execute("DELETE FROM roster_dirty WHERE person_id = ?", [pid])


@dataclass(frozen=True)
class _Pass:
    """What one reconcile batch derives once: the gates' public keys, the sealer (one
    ephemeral key, each gate's AES key once), the roster-id key."""

    gates: dict[str, X25519PublicKey]
    sealer: Sealer
    id_key: bytes = field(repr=False)


def _reconcile_person(deps: OfficeDeps, person_id: str, pass_: _Pass) -> int:
    db, now = deps.db, deps.clock()
    facts = person_facts(db, deps.vault, person_id, grace_days=deps.grace_days, now=now)
    change_id = 0
    made = 0
    for gate, public in sorted(pass_.gates.items()):
        rid = roster_id_with(pass_.id_key, gate, person_id)
        row = db.execute(
            "SELECT entry, entry_hash FROM roster_sent WHERE gate = ? AND roster_id = ?",
            [gate, rid],
        ).fetchone()
        old = json.loads(row[0]) if row else None
        new = entry_for(facts, gate)
        new_sum = summary(new) if new is not None else None
        if (old is None and new is None) or (
            row is not None and new_sum is not None and summary_hash(new_sum) == row[1]
        ):
            continue
        change_id = change_id or _next_change_id(db)
        body = {"op": "drop" if new is None else "put", "rid": rid, "entry": new}
        _append(
            deps,
            gate,
            public,
            pass_.sealer,
            {**body, "erasure": is_erasure(old, new_sum)},
            change_id=change_id,
        )
        if new_sum is None:
            db.execute("DELETE FROM roster_sent WHERE gate = ? AND roster_id = ?", [gate, rid])
        else:
            db.execute(
                "INSERT OR REPLACE INTO roster_sent (gate, roster_id, person_id, entry_hash, entry)"
                " VALUES (?, ?, ?, ?, ?)",
                [gate, rid, person_id, summary_hash(new_sum), canonical(new_sum).decode()],
            )
        made += 1
    return made


def _append(
    deps: OfficeDeps,
    gate: str,
    public: X25519PublicKey,
    sealer: Sealer,
    body: dict[str, Any],
    *,
    change_id: int,
) -> None:
    """``body`` (op, rid, erasure, entry) as ``gate``'s next version: sealed for it, with
    the keys every change carries (:meth:`OfficeDeps.key_fields`), chained to its head."""
    db = deps.db
    version, prev = head(db, deps.site, gate)
    change = {"v": version + 1, **body, **deps.key_fields()}
    sealed = sealer.seal(public, gate, canonical(change), change_aad(deps.site, gate, version + 1))
    db.execute(
        "INSERT INTO roster_changes (gate, version, op, erasure, roster_id, sealed, hash,"
        " change_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            gate,
            version + 1,
            change["op"],
            int(bool(change["erasure"])),
            change["rid"],
            b64(sealed),
            link(prev, change),
            change_id,
            deps.clock(),
        ],
    )


def queue_keys(deps: OfficeDeps) -> int:
    """A ``keys`` change (no person in it: the keys every change carries) for every
    registered gate, in the caller's transaction: how a site-key rotation reaches every
    gate, also one offline now. Returns the number of gates."""
    gates = {g: load_gate_public(k) for g, k in gate_keys(deps.db).items()}
    sealer = Sealer()
    with transaction(deps.db):
        change_id = _next_change_id(deps.db)
        body = {"op": "keys", "rid": "", "erasure": False, "entry": None}
        for gate, public in sorted(gates.items()):
            _append(deps, gate, public, sealer, body, change_id=change_id)
    return len(gates)


class AckRefusedError(RosterError):
    """A gate's acknowledgement that does not authenticate (refused and audited)."""


def record_ack(db: sqlite_utils.Database, site: str, gate: str, payload: bytes, now: float) -> bool:
    """Keep a gate's retained, signed acknowledgement (:func:`verified_ack`); True when
    kept. AckRefusedError (audited as ``roster.ack_refused``) when it is malformed, unsigned,
    forged, for another site or gate, names a version the office never issued, or the gate
    has no ack key. An older genuine ack (a replay, or a gate restored from a backup) is
    kept too: it can only make the gate look behind, and the office then resends."""
    try:
        doc = verified_ack(db, site, gate, payload)
    except Exception as exc:  # whatever the payload is, one refusal (never a crashed session)
        if not isinstance(exc, RosterError):
            exc = RosterError(f"acknowledgement is malformed ({type(exc).__name__})")
        reason = str(exc)[:300]  # bounded: parts of it come from the payload
        with transaction(db):
            audit.append(db, "roster", "roster.ack_refused", gate[:64], {"error": reason}, now=now)
        raise AckRefusedError(reason) from exc
    error = doc.get("error")
    with transaction(db):
        db.execute(
            "INSERT OR REPLACE INTO roster_acks (gate, version, head, applied_at, error,"
            " received_at, site_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                gate,
                doc["version"],
                doc["head"],
                float(doc.get("applied_at") or now),
                None if error is None else str(error)[:300],
                now,
                _site_key_of(doc),
            ],
        )
    return True


def _site_key_of(doc: Mapping[str, Any]) -> str | None:
    """What an ack says of the gate's site key, checked and bounded (JSON), or None."""
    info = doc.get("site_key")
    if not isinstance(info, dict):
        return None
    key, adopts, why = info.get("id"), info.get("adopts"), info.get("why", "")
    if not isinstance(key, str) or not isinstance(adopts, bool) or not isinstance(why, str):
        return None
    why = "".join(c for c in why if c.isprintable())[:200]  # shown to the operator
    return json.dumps({"id": key[:32], "adopts": adopts, "why": why}, sort_keys=True)


def site_rotation_blockers(db: sqlite_utils.Database, site: str) -> list[str]:
    """Why a site-key rotation at the office would leave a registered gate behind (empty:
    every gate has applied its whole roster and said in that ack that it adopts a new site
    key from the roster)."""
    out = []
    acks = dict(db.execute("SELECT gate, site_key FROM roster_acks").fetchall())
    for gate in sorted(gate_keys(db)):
        if gate not in acks:
            out.append(f"{gate}: has never acknowledged the roster")
            continue
        late = behind(db, site, gate)
        if late:
            out.append(f"{gate}: has not applied its last {late} roster changes")
            continue
        info = json.loads(acks[gate]) if acks[gate] else None
        if info is None:
            out.append(f"{gate}: runs a gateway that cannot adopt a site key (upgrade it)")
        elif not info["adopts"]:
            out.append(f"{gate}: {info['why'] or 'cannot adopt a site key'}")
    return out


def verified_ack(db: sqlite_utils.Database, site: str, gate: str, payload: bytes) -> dict[str, Any]:
    """The acknowledgement ``{"format", "site", "gate", "version", "head", "applied_at",
    "error"?, "key_id", "sig"}`` when signed by the gate's registered ack key, for this
    site and gate, at a version and chain head the office issued; RosterError otherwise."""
    row = db.execute("SELECT ack_key FROM roster_gates WHERE name = ?", [gate]).fetchone()
    if row is None:
        raise RosterError(f"acknowledgement from unregistered gate {gate[:64]!r}")
    if row[0] is None:
        raise RosterError(NO_ACK_KEY.format(gate=gate))
    try:
        doc: Any = json.loads(payload)
    except ValueError as exc:
        raise RosterError("acknowledgement is not JSON") from exc
    trusted = {ed25519_key_id(load_ack_public(row[0])): row[0]}
    doc = verify_manifest(doc, trusted, "roster acknowledgement")
    if doc.get("format") != FORMAT or doc.get("site") != site or doc.get("gate") != gate:
        raise RosterError(f"acknowledgement is for {doc.get('site')}/{doc.get('gate')}")
    version, hd = doc.get("version"), doc.get("head")
    if not isinstance(version, int) or isinstance(version, bool) or not isinstance(hd, str):
        raise RosterError("acknowledgement has no valid version or head")
    if not 0 <= version <= head(db, site, gate)[0]:
        raise RosterError("acknowledged version is not one the office issued")
    applied_at = doc.get("applied_at")
    if applied_at is not None and not (
        isinstance(applied_at, int | float) and 0 <= applied_at < 1e11
    ):
        raise RosterError("acknowledgement has an invalid applied_at")
    issued = (
        genesis(site, gate)
        if version == 0
        else (
            db.execute(
                "SELECT hash FROM roster_changes WHERE gate = ? AND version = ?", [gate, version]
            ).fetchone()
            or [None]
        )[0]
    )
    if issued != hd:
        raise RosterError(f"acknowledged version {version} has a head the office never issued")
    return dict(doc)


def behind(db: sqlite_utils.Database, site: str, gate: str) -> int:
    """How many versions the gate's last acknowledgement is behind its head."""
    return max(0, head(db, site, gate)[0] - acked(db, gate))


def acked(db: sqlite_utils.Database, gate: str) -> int:
    """The version the gate last acknowledged (0 before any)."""
    row = db.execute("SELECT version FROM roster_acks WHERE gate = ?", [gate]).fetchone()
    return int(row[0]) if row else 0
