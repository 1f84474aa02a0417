"""What the office puts on the broker for each gate, and what it sees come back.

Per gate (topics under ``{prefix}/{site}/roster/{gate}/``): the retained, signed
``manifest`` (version, chain head, the retained change chunks, the snapshot if any);
retained change chunks ``c/{first}`` (contiguous versions, each change sealed for the gate);
a retained snapshot ``s/{part}`` when the gate is too far behind (the whole roster at one
version, sealed for the gate, split into parts; its SHA-256 is in the manifest). Chunks
the gate acknowledged are cleared from the broker (an empty retained message).
Convergence (:func:`status`) and the erasure alerts (:func:`due_alerts`) read the acks.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.privacy import audit
from gateway.privacy.roster_crypto import (
    FORMAT,
    canonical,
    load_gate_public,
    roster_id_key,
    roster_id_with,
    seal,
    sign_manifest,
    snapshot_aad,
)
from gateway.services.roster_entries import entry_for, person_facts
from gateway.services.roster_office import OfficeDeps, acked, gate_keys, head
from gateway.store.kv import put_kv
from gateway.store.tx import transaction

SNAPSHOT_KV = "roster.snapshot."
NO_ACK_KEY_STATUS = (
    "no ack key registered, its acks are refused: run `gateway roster add-gate` with both "
    "keys `gateway roster gate-key` prints on the gate"
)
MANIFEST_KV = "roster.manifest."


@dataclass
class Publication:
    """Messages for one gate: ``(topic suffix, payload, retain)``; b"" clears a retained one."""

    gate: str
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    chunks: list[tuple[int, int]] = field(default_factory=list)  # newly published
    cleared: list[int] = field(default_factory=list)  # chunk firsts cleared
    snapshot: dict[str, Any] | None = None
    manifest_key: str = ""


def _kv(deps: OfficeDeps, key: str) -> Any:
    row = deps.db.execute("SELECT value FROM kv WHERE key = ?", [key]).fetchone()
    return json.loads(row[0]) if row else None


def _retained_chunks(deps: OfficeDeps, gate: str) -> list[tuple[int, int]]:
    rows = deps.db.execute(
        "SELECT chunk, min(version), max(version) FROM roster_changes WHERE gate = ?"
        " AND retained = 1 GROUP BY chunk ORDER BY chunk",
        [gate],
    ).fetchall()
    return [(int(r[1]), int(r[2])) for r in rows]


def _build_snapshot(deps: OfficeDeps, gate: str, chunk_bytes: int, pub: Publication) -> None:
    """The whole roster of ``gate`` at its head, sealed for it, in parts."""
    db, site = deps.db, deps.site
    version, hd = head(db, site, gate)
    entries: dict[str, Any] = {}
    now = deps.clock()
    id_key = roster_id_key(deps.device_root)
    for (pid,) in db.execute("SELECT person_id FROM roster_sent WHERE gate = ?", [gate]):
        facts = person_facts(db, deps.vault, pid, grace_days=deps.grace_days, now=now)
        entry = entry_for(facts, gate)
        if entry is not None:
            entries[roster_id_with(id_key, gate, pid)] = entry
    plain = canonical({"version": version, "head": hd, "entries": entries, **deps.key_fields()})
    public = load_gate_public(gate_keys(db)[gate])
    sealed = seal(public, gate, plain, snapshot_aad(site, gate, version))
    parts = [sealed[i : i + chunk_bytes] for i in range(0, len(sealed), chunk_bytes)]
    old = _kv(deps, SNAPSHOT_KV + gate)
    for i, part in enumerate(parts):
        pub.messages.append((f"s/{i}", part))
    for i in range(len(parts), int(old["parts"]) if old else 0):
        pub.messages.append((f"s/{i}", b""))
    pub.snapshot = {
        "version": version,
        "head": hd,
        "parts": len(parts),
        "sha256": hashlib.sha256(sealed).hexdigest(),
    }


def plan(
    deps: OfficeDeps,
    gate: str,
    key: Ed25519PrivateKey,
    *,
    chunk_bytes: int,
    max_pending: int,
    force: bool = False,
) -> Publication:
    """What to publish for ``gate`` now (after :func:`reconcile`); ``force`` republishes
    the manifest even when unchanged (a gate reported a refusal: e.g. a forged manifest
    replaced the retained one)."""
    db, site = deps.db, deps.site
    pub = Publication(gate)
    version, hd = head(db, site, gate)
    done = acked(db, gate)
    snap = _kv(deps, SNAPSHOT_KV + gate)
    retained = _retained_chunks(deps, gate)
    if snap is not None and done >= int(snap["version"]):  # the gate has it: clear it
        pub.messages += [(f"s/{i}", b"") for i in range(int(snap["parts"]))]
        pub.snapshot, snap = {"cleared": True}, None
    lowest = min([f for f, _ in retained], default=None)
    unpublished = db.execute(
        "SELECT min(version) FROM roster_changes WHERE gate = ? AND chunk IS NULL", [gate]
    ).fetchone()[0]
    lowest = lowest or unpublished or version + 1
    floor = int(snap["version"]) if snap else -1
    if done < version and (version - done > max_pending or done < lowest - 1) and floor < done:
        _build_snapshot(deps, gate, chunk_bytes, pub)
        floor = int(pub.snapshot["version"]) if pub.snapshot else floor
    cut = max(done, floor)
    for first, last in retained:
        if last <= cut:
            pub.messages.append((f"c/{first}", b""))
            pub.cleared.append(first)
    _new_chunks(deps, gate, max(cut, 0), chunk_bytes, pub)
    chunks = [c for c in retained if c[1] > cut] + pub.chunks
    current = pub.snapshot if pub.snapshot and "cleared" not in pub.snapshot else snap
    doc = {
        "format": FORMAT,
        "site": site,
        "gate": gate,
        "version": version,
        "head": hd,
        "chunks": [list(c) for c in chunks],
        "snapshot": current,
    }
    pub.manifest_key = hashlib.sha256(canonical(doc)).hexdigest()
    if force or pub.messages or _kv(deps, MANIFEST_KV + gate) != pub.manifest_key:
        doc["ts"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deps.clock()))
        pub.messages.append(("manifest", canonical(sign_manifest(doc, key))))
    return pub


def plan_many(
    deps: OfficeDeps,
    gates: list[str],
    key: Ed25519PrivateKey,
    *,
    chunk_bytes: int,
    max_pending: int,
    force: set[str] | frozenset[str] = frozenset(),
) -> list[Publication]:
    """:func:`plan` for several gates in one call (one database hop for the agent); the
    gates with nothing to publish are left out."""
    pubs = [
        plan(
            deps,
            gate,
            key,
            chunk_bytes=chunk_bytes,
            max_pending=max_pending,
            force=gate in force,
        )
        for gate in gates
    ]
    return [p for p in pubs if p.messages]


def _new_chunks(
    deps: OfficeDeps, gate: str, after: int, chunk_bytes: int, pub: Publication
) -> None:
    rows = deps.db.execute(
        "SELECT version, sealed FROM roster_changes WHERE gate = ? AND chunk IS NULL"
        " AND version > ? ORDER BY version",
        [gate, after],
    ).fetchall()
    batch: list[dict[str, Any]] = []
    size = 0

    def flush() -> None:
        nonlocal batch, size
        if batch:
            first, last = batch[0]["v"], batch[-1]["v"]
            doc = {"format": FORMAT, "gate": gate, "first": first, "last": last, "changes": batch}
            pub.messages.append((f"c/{first}", canonical(doc)))
            pub.chunks.append((first, last))
        batch, size = [], 0

    for v, sealed in rows:
        if batch and size + len(sealed) > chunk_bytes:
            flush()
        batch.append({"v": int(v), "c": sealed})
        size += len(sealed) + 32
    flush()


def published(deps: OfficeDeps, pub: Publication) -> None:
    """Record that every message of ``pub`` reached the broker."""
    db, gate = deps.db, pub.gate
    with transaction(db):
        for first, last in pub.chunks:
            db.execute(
                "UPDATE roster_changes SET chunk = ?, retained = 1 WHERE gate = ?"
                " AND version BETWEEN ? AND ?",
                [first, gate, first, last],
            )
        for first in pub.cleared:
            db.execute(
                "UPDATE roster_changes SET retained = 0 WHERE gate = ? AND chunk = ?", [gate, first]
            )
        if pub.snapshot is not None:
            db.execute("DELETE FROM kv WHERE key = ?", [SNAPSHOT_KV + gate])
            if "cleared" not in pub.snapshot:
                db.execute(
                    "INSERT INTO kv (key, value) VALUES (?, ?)",
                    [SNAPSHOT_KV + gate, json.dumps(pub.snapshot)],
                )
                # changes up to the snapshot are in it: never sent one by one
                db.execute(
                    "UPDATE roster_changes SET chunk = 0 WHERE gate = ? AND chunk IS NULL"
                    " AND version <= ?",
                    [gate, pub.snapshot["version"]],
                )
        put_kv(db, MANIFEST_KV + gate, json.dumps(pub.manifest_key))


def published_many(deps: OfficeDeps, pubs: list[Publication]) -> None:
    """:func:`published` for several publications, in one transaction."""
    with transaction(deps.db):
        for pub in pubs:
            published(deps, pub)


# -- convergence -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateStatus:
    """One gate's convergence (no identity)."""

    gate: str
    version: int
    acked: int
    behind: int
    behind_since: float | None
    last_ack: float | None
    error: str | None
    #: the fingerprint of the site key its last ack says it uses (None: not said)
    site_key: str | None = None


@dataclass(frozen=True)
class ChangeStatus:
    """One office change: when, whether it erases, which gates applied it and which not."""

    change_id: int
    created_at: float
    erasure: bool
    applied: list[str]
    behind: list[str]


@dataclass(frozen=True)
class RosterStatus:
    """The office's view of convergence (what ``gateway roster status`` prints)."""

    gates: list[GateStatus]
    changes: list[ChangeStatus]
    alerts: int


def status(db: sqlite_utils.Database, site: str, *, recent: int = 20) -> RosterStatus:
    """Every gate's version, acknowledgement and lag; the recent changes and which gates
    applied each (the web console can call this as the CLI does)."""
    gates = []
    acks: dict[str, int] = {}
    unsigned = {r[0] for r in db.execute("SELECT name FROM roster_gates WHERE ack_key IS NULL")}
    for gate in sorted(gate_keys(db)):
        version, _ = head(db, site, gate)
        row = db.execute(
            "SELECT version, received_at, error, site_key FROM roster_acks WHERE gate = ?",
            [gate],
        ).fetchone()
        if gate in unsigned:
            row = (row[0] if row else 0, row[1] if row else None, NO_ACK_KEY_STATUS, None)
        done = int(row[0]) if row else 0
        acks[gate] = done
        since = db.execute(
            "SELECT min(created_at) FROM roster_changes WHERE gate = ? AND version > ?",
            [gate, done],
        ).fetchone()[0]
        gates.append(
            GateStatus(
                gate,
                version,
                done,
                max(0, version - done),
                since,
                row[1] if row else None,
                row[2] if row else None,
                json.loads(row[3])["id"] if row and row[3] else None,
            )
        )
    ids = [
        r[0]
        for r in db.execute(
            "SELECT DISTINCT change_id FROM roster_changes ORDER BY change_id DESC LIMIT ?",
            [recent],
        )
    ]
    changes = []
    for cid in sorted(ids):
        rows = db.execute(
            "SELECT gate, version, erasure, created_at FROM roster_changes WHERE change_id = ?",
            [cid],
        ).fetchall()
        applied = sorted(g for g, v, _, _ in rows if acks.get(g, 0) >= v)
        behind = sorted(g for g, v, _, _ in rows if acks.get(g, 0) < v)
        erasure = any(bool(r[2]) for r in rows)
        changes.append(ChangeStatus(cid, min(r[3] for r in rows), erasure, applied, behind))
    alerts = int(db.execute("SELECT count(*) FROM roster_alerts").fetchone()[0])
    return RosterStatus(gates, changes, alerts)


@dataclass(frozen=True)
class PendingErasure:
    """An erasure or revocation a gate has not acknowledged yet (no identity)."""

    gate: str
    change_id: int
    version: int
    created_at: float
    alerted: bool


def pending_erasures(db: sqlite_utils.Database) -> list[PendingErasure]:
    """Every erasure or revocation not yet acknowledged by its gate, oldest first
    (``alerted``: :func:`due_alerts` already reported it)."""
    rows = db.execute(
        "SELECT c.gate, c.change_id, c.version, c.created_at, r.gate IS NOT NULL"
        " FROM roster_changes c LEFT JOIN roster_acks a ON a.gate = c.gate"
        " LEFT JOIN roster_alerts r ON r.gate = c.gate AND r.version = c.version"
        " WHERE c.erasure = 1 AND coalesce(a.version, 0) < c.version"
        " ORDER BY c.created_at, c.gate, c.version"
    ).fetchall()
    return [PendingErasure(str(g), int(c), int(v), float(t), bool(a)) for g, c, v, t, a in rows]


def due_alerts(deps: OfficeDeps, ack_within_s: float) -> list[dict[str, Any]]:
    """Erasures not acknowledged by their gate within ``ack_within_s``, each reported once
    (anonymized: gate, change number, version, age); audited as ``roster.alert``."""
    db, now = deps.db, deps.clock()
    out: list[dict[str, Any]] = []
    rows = db.execute(
        "SELECT c.gate, c.version, c.change_id, c.created_at FROM roster_changes c"
        " LEFT JOIN roster_acks a ON a.gate = c.gate"
        " LEFT JOIN roster_alerts r ON r.gate = c.gate AND r.version = c.version"
        " WHERE c.erasure = 1 AND c.created_at < ? AND coalesce(a.version, 0) < c.version"
        " AND r.gate IS NULL ORDER BY c.created_at",
        [now - ack_within_s],
    ).fetchall()
    if not rows:
        return out
    with transaction(db):
        for gate, version, cid, created in rows:
            doc = {
                "type": "roster.erasure_unacknowledged",
                "gate": gate,
                "change": int(cid),
                "version": int(version),
                "age_s": round(now - created, 1),
            }
            db.execute("INSERT INTO roster_alerts VALUES (?, ?, ?)", [gate, version, now])
            audit.append(db, "roster", "roster.alert", gate, doc, now=now)
            out.append(doc)
    return out
