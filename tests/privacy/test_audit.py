"""Audit hash chain: append, verify, tamper detection, biometric refusal."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sqlite_utils

from gateway.privacy import audit
from gateway.store.tx import transaction


def test_chain_verifies_and_links(db: sqlite_utils.Database) -> None:
    seqs = [audit.append(db, "op", "consent.granted", f"p{i}", {"i": i}) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    res = audit.verify(db)
    assert res.ok
    assert res.rows == 5
    rows = list(db.query("SELECT prev_hash, hash FROM audit ORDER BY seq"))
    assert rows[0]["prev_hash"] == audit.GENESIS
    for a, b in itertools.pairwise(rows):
        assert b["prev_hash"] == a["hash"]


def test_tampered_row_detected(db: sqlite_utils.Database) -> None:
    for i in range(4):
        audit.append(db, "op", "template.create", f"p{i}", {"count": 3})
    db.execute("UPDATE audit SET details = ? WHERE seq = 3", ['{"count":1}'])
    res = audit.verify(db)
    assert not res.ok
    assert res.broken_seq == 3


def test_deleted_middle_and_tail_rows_detected(db: sqlite_utils.Database) -> None:
    for i in range(4):
        audit.append(db, "op", "x", f"p{i}")
    db.execute("DELETE FROM audit WHERE seq = 4")
    res = audit.verify(db)
    assert not res.ok
    assert res.broken_seq == 4
    db.execute("DELETE FROM audit WHERE seq = 2")
    assert audit.verify(db).broken_seq == 2


@pytest.mark.parametrize(
    "details",
    [
        {"embedding": [0.1, 0.2]},
        {"nested": {"Template": "x"}},
        {"image": "frame.png"},
        {"blob": b"\x00\x01"},
        {"vec": np.zeros(4, dtype=np.float32)},
        {"list": [float(i) for i in range(128)]},
    ],
)
def test_biometric_details_refused(db: sqlite_utils.Database, details: dict[str, object]) -> None:
    with pytest.raises(audit.AuditError):
        audit.append(db, "op", "x", "p", details)
    assert db.execute("SELECT count(*) FROM audit").fetchone()[0] == 0


def test_append_inside_open_transaction(db: sqlite_utils.Database) -> None:
    def failing_write() -> None:
        with transaction(db):
            db.execute("INSERT INTO kv (key, value) VALUES ('a', 'b')")
            audit.append(db, "op", "x", "p")
            assert db.conn.in_transaction
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_write()
    # rolled back together with the surrounding write
    assert db.execute("SELECT count(*) FROM audit").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM kv WHERE key = 'a'").fetchone()[0] == 0
    with transaction(db):
        audit.append(db, "op", "x", "p")
    assert audit.verify(db).ok
