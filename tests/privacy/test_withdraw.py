"""Withdrawal: immediate gallery removal, crypto-erase with no bytes left, card unaffected."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from gateway.privacy import audit, consent, people
from gateway.privacy.people import PersonError
from gateway.privacy.vault import Vault
from gateway.services.withdrawal import withdraw

from .conftest import FakeGallery, random_embedding, unit


def _all_bytes(db_path: Path) -> bytes:
    out = b""
    for suffix in ("", "-wal", "-journal"):
        p = Path(str(db_path) + suffix)
        if p.exists():
            out += p.read_bytes()
    return out


def test_withdraw_erases_everything_within_one_second(
    db: sqlite_utils.Database, db_path: Path, vault: Vault, gallery: FakeGallery, consented: str
) -> None:
    pid = consented
    raw = np.stack([random_embedding(i) for i in range(5)])
    site = vault.store_templates(db, pid, raw, model="sface")
    gallery.replace_person(pid, site)
    db.execute("INSERT INTO cards (person_id, card_hmac, created_at) VALUES (?, x'aa55', 1)", [pid])
    # bystander keeps their data
    other = people.add_person(db, "Other")
    vault.store_templates(db, other, random_embedding(99)[None, :], model="sface")
    ciphertexts = [
        bytes(r[0])
        for r in db.execute("SELECT ciphertext FROM templates WHERE person_id = ?", [pid])
    ]
    wrapped = bytes(
        db.execute("SELECT wrapped_key FROM face_keys WHERE person_id = ?", [pid]).fetchone()[0]
    )
    probe = vault.transform(unit(raw[0] + 0.2 * random_embedding(50)))
    assert gallery.identify(probe, 0.5) == pid
    # sanity: before withdrawal the ciphertext is visible in the dump and in the files
    assert ciphertexts[0].hex().encode() in "\n".join(db.conn.iterdump()).encode().lower()
    assert ciphertexts[0][:24] in _all_bytes(db_path)

    t0 = time.monotonic()
    receipt = withdraw(db, vault, gallery, pid, "cli", actor="office-1")
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0

    assert gallery.identify(probe, 0.5) is None
    assert receipt.templates_erased == 5
    assert db.execute("SELECT count(*) FROM cards WHERE person_id = ?", [pid]).fetchone()[0] == 1
    assert (
        db.execute("SELECT count(*) FROM templates WHERE person_id = ?", [pid]).fetchone()[0] == 0
    )
    assert (
        db.execute("SELECT count(*) FROM templates WHERE person_id = ?", [other]).fetchone()[0] == 1
    )
    latest = consent.latest(db, pid)
    assert latest is not None
    assert latest.status == "withdrawn"
    row = db.execute(
        "SELECT channel, templates_erased FROM withdrawal_receipts WHERE id = ?", [receipt.id]
    ).fetchone()
    assert tuple(row) == ("cli", 5)
    ev = receipt.event()
    assert ev["type"] == "consent_withdrawn"
    assert pid not in str(ev)
    assert audit.verify(db).ok

    dump = "\n".join(db.conn.iterdump()).encode()
    raw_file = _all_bytes(db_path)
    for secret in [
        *ciphertexts,
        wrapped,
        *(v.tobytes() for v in raw),
        *(v.tobytes() for v in site),
    ]:
        assert secret.hex().encode() not in dump.lower()
        assert secret[:24] not in raw_file
        assert secret[-24:] not in raw_file


def test_withdraw_again_and_unknown(
    db: sqlite_utils.Database, vault: Vault, gallery: FakeGallery, consented: str
) -> None:
    withdraw(db, vault, gallery, consented, "gate")
    again = withdraw(db, vault, gallery, consented, "mqtt")
    assert again.templates_erased == 0
    with pytest.raises(PersonError):
        withdraw(db, vault, gallery, "nobody", "cli")
    with pytest.raises(ValueError, match="channel"):
        withdraw(db, vault, gallery, consented, "carrier-pigeon")
