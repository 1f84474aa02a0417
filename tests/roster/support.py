"""An office and gates on state databases in a tmp dir, for the roster tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from gateway.credentials.store import Credentials
from gateway.face.gallery import Gallery
from gateway.face.protection import Mode
from gateway.keys import Keys, Purpose
from gateway.mqtt.sign import generate, public_b64
from gateway.privacy import audit
from gateway.privacy.notice import Notice
from gateway.privacy.roster_crypto import ack_public_b64, gate_ack_private, gate_private
from gateway.privacy.roster_crypto import public_b64 as x_public
from gateway.privacy.vault import Vault
from gateway.services import consent as consent_svc
from gateway.services import credentials as creds_svc
from gateway.services import people as people_svc
from gateway.services import roster_gate, roster_office, roster_publish
from gateway.store import database
from tests.privacy.conftest import NOTICE_EN

SITE = "green-court"
NOTICE = Notice("2025-06", NOTICE_EN)
GATES_KEY = os.urandom(32)
SITE_KEY = os.urandom(32)


def face(seed: int, n: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@dataclass
class Office:
    db: sqlite_utils.Database
    keys: Keys
    vault: Vault
    signing: Any
    deps: roster_office.OfficeDeps
    creds: Credentials

    @property
    def trusted(self) -> dict[str, str]:
        from gateway.mqtt.sign import key_id_of

        pub = self.signing.public_key()
        return {key_id_of(pub): public_b64(pub)}

    def add(self, name: str, *, card: int | None = None, scope: str = "compound") -> str:
        pid = people_svc.add_person(self.db, people_svc.NewPerson(name, unit="3-402"), actor="t")
        answer = consent_svc.ConsentAnswer(pid, "paper", "t", scope=scope)
        consent_svc.grant(self.db, NOTICE, answer)
        self.vault.store_site_templates(self.db, pid, face(hash(name) % 1000), model="sface")
        if card is not None:
            creds_svc.add_card(self.cdeps, pid, (10, card), actor="t", channel="cli")
        return pid

    @property
    def cdeps(self) -> creds_svc.CredentialDeps:
        return creds_svc.CredentialDeps(self.creds)

    def publish(self, broker: dict[str, bytes], *, max_pending: int = 5000) -> int:
        """Reconcile and put every gate's messages into ``broker`` (topic suffix -> payload)."""
        made = roster_office.reconcile(self.deps)
        for gate in roster_office.gate_keys(self.db):
            pub = roster_publish.plan(
                self.deps, gate, self.signing, chunk_bytes=64 * 1024, max_pending=max_pending
            )
            for suffix, payload in pub.messages:
                topic = f"{gate}/{suffix}"
                if payload:
                    broker[topic] = payload
                else:
                    broker.pop(topic, None)
            roster_publish.published(self.deps, pub)
        return made


@dataclass
class Gate:
    name: str
    db: sqlite_utils.Database
    keys: Keys
    vault: Vault
    gallery: Gallery
    creds: Credentials
    deps: roster_gate.GateDeps
    acks: list[bytes] = field(default_factory=list)

    def docs(self, broker: dict[str, bytes]) -> dict[str, bytes]:
        head = self.name + "/"
        return {t[len(head) :]: p for t, p in broker.items() if t.startswith(head)}

    def sync(self, broker: dict[str, bytes], office: Office | None = None) -> roster_gate.Verified:
        """What the gate agent does with the retained messages; the ack goes to the office."""
        docs = self.docs(broker)
        m = roster_gate.check_manifest(self.deps, docs["manifest"])
        firsts, snap = roster_gate.needed(self.deps, m)
        chunks = {f: docs[f"c/{f}"] for f in firsts if f"c/{f}" in docs}
        parts = None
        if snap:
            n = m["snapshot"]["parts"]
            parts = [docs[f"s/{i}"] for i in range(n) if f"s/{i}" in docs]
        checked = roster_gate.verify(self.deps, m, chunks, parts)
        roster_gate.apply(self.deps, checked)
        ack = roster_gate.ack_payload(self.deps)
        self.acks.append(ack)
        if office is not None:
            roster_office.record_ack(office.db, SITE, self.name, ack, 1e10)
        return checked


def open_db(path: Path, device: bytes) -> sqlite_utils.Database:
    db = database.connect(path)
    audit.bind_key(db, audit.ChainKey(Keys(device, SITE_KEY).subkey(Purpose.AUDIT_CHAIN)))
    return db


def make_office(tmp: Path) -> Office:
    keys = Keys(os.urandom(32), SITE_KEY)  # no gates key: the office never holds it
    db = open_db(tmp / "office.db", keys.device)
    vault = Vault.from_keys(keys)
    deps = roster_office.OfficeDeps(db, vault, keys.device, keys.subkey(Purpose.CARD_LOOKUP), SITE)
    creds = Credentials(db, keys.device, index_key=keys.pin_index_site)
    return Office(db, keys, vault, generate(), deps, creds)


def make_gate(tmp: Path, name: str, office: Office, protection: Mode = "orthogonal") -> Gate:
    gate = open_gate(tmp, name, office.trusted, protection=protection)
    register_gate(office, name, gate.keys.device)
    return gate


def open_gate(
    tmp: Path,
    name: str,
    trusted: dict[str, str],
    *,
    device: bytes | None = None,
    carried: dict[Purpose, bytes] | None = None,
    protection: Mode = "orthogonal",
) -> Gate:
    """A gate's state database and keys (``device``: its device key, random by default;
    ``carried``: the keys its rotations carried, e.g. a card or PIN-index layer)."""
    keys = Keys(device or os.urandom(32), SITE_KEY, GATES_KEY, carried=carried or {})
    db = open_db(tmp / f"{name}.db", keys.device)
    vault = Vault.from_keys(keys, protection=protection)
    gallery = Gallery(vault.dim)
    creds = Credentials(db, keys.device, index_key=keys.pin_index_site, carried=keys.carried)
    deps = roster_gate.GateDeps(
        db,
        vault,
        gallery,
        keys.device,
        SITE,
        name,
        trusted,
        credentials=creds,
        carried=keys.carried,
    )
    return Gate(name, db, keys, vault, gallery, creds, deps)


def register_gate(office: Office, name: str, device: bytes) -> None:
    """``gateway roster add-gate``: the gate's X25519 key and its ack key at the office."""
    roster_office.add_gate(
        office.db,
        name,
        x_public(gate_private(device)),
        actor="t",
        ack_key=ack_public_b64(gate_ack_private(device)),
    )


@dataclass(frozen=True)
class Card:
    facility: int
    card_number: int
    reader: str = "entry"


def traces(db: sqlite_utils.Database) -> dict[str, int]:
    """Rows a person leaves on a gate, by table."""
    tables = ("people", "cards", "pins", "consents", "face_keys", "templates", "roster_members")
    return {t: int(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}  # noqa: S608
