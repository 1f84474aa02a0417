"""Issue 18 item 10c: the audit chain is keyed per device, re-anchored, pruned verifiably,
its head published off the device and checked, and a break raises the compliance alert."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from typing import Any

import pytest
import sqlite_utils

from gateway.gate.audit_watch import AuditWatch, check_published, head_payload, reanchor
from gateway.mqtt import events as ev
from gateway.privacy import audit
from gateway.privacy.audit_retention import prune
from gateway.privacy.compliance import Thresholds

DAY = 86400.0


@pytest.fixture
def key() -> audit.ChainKey:
    return audit.ChainKey.from_device(secrets.token_bytes(32))


@pytest.fixture
def keyed(db: sqlite_utils.Database, key: audit.ChainKey) -> sqlite_utils.Database:
    audit.bind_key(db, key)
    yield db
    audit.bind_key(db, None)


def _forge(db: sqlite_utils.Database, seq: int, details: str) -> None:
    """What an attacker with write access can do: rewrite a row and re-link every later one
    with plain SHA-256 (the only hash the old chain used), and move the head record."""
    rows = db.execute(
        "SELECT seq, ts, actor, action, subject, details, prev_hash FROM audit ORDER BY seq"
    ).fetchall()
    prev = None
    for s, ts, actor, action, subject, d0, p0 in rows:
        d = details if s == seq else d0
        p = prev if prev is not None else p0
        if s >= seq:
            h = audit.row_hash(
                p, seq=s, ts=ts, actor=actor, action=action, subject=subject, details=d
            )
            db.execute(
                "UPDATE audit SET details = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                [d, p, h, s],
            )
            prev = h
        else:
            prev = db.execute("SELECT hash FROM audit WHERE seq = ?", [s]).fetchone()[0]
    db.execute("UPDATE kv SET value = ? WHERE key = ?", [f"{rows[-1][0]}:{prev}", audit.HEAD_KEY])


def test_rewritten_and_relinked_chain_is_detected(keyed: sqlite_utils.Database) -> None:
    for i in range(5):
        audit.append(keyed, "op", "consent.granted", f"p{i}", {"i": i})
    assert audit.verify(keyed).ok
    _forge(keyed, 3, '{"i":99}')
    res = audit.verify(keyed)
    assert not res.ok
    assert res.broken_seq is not None
    assert res.broken_seq <= 3


def test_rows_are_macs_not_plain_hashes(keyed: sqlite_utils.Database, key: audit.ChainKey) -> None:
    audit.append(keyed, "op", "x", "p")
    row = keyed.execute("SELECT * FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    cols = [d[0] for d in keyed.execute("SELECT * FROM audit LIMIT 0").description]
    r = dict(zip(cols, row, strict=True))
    assert r["key_id"] == key.key_id
    plain = audit.row_hash(
        r["prev_hash"],
        seq=r["seq"],
        ts=r["ts"],
        actor=r["actor"],
        action=r["action"],
        subject=r["subject"],
        details=r["details"],
    )
    assert r["hash"] != plain
    # another device's key does not verify it
    other = audit.ChainKey.from_device(secrets.token_bytes(32))
    assert not audit.verify(keyed, other).ok


def test_unkeyed_append_to_keyed_chain_refused(keyed: sqlite_utils.Database) -> None:
    audit.append(keyed, "op", "x", "p")
    audit.bind_key(keyed, None)
    with pytest.raises(audit.AuditError, match="keyed"):
        audit.append(keyed, "op", "x", "p")


def test_legacy_chain_is_reanchored_and_audited(
    db: sqlite_utils.Database, key: audit.ChainKey
) -> None:
    for i in range(3):
        audit.append(db, "op", "x", f"p{i}")  # the old unkeyed chain
    legacy_head = db.execute("SELECT hash FROM audit WHERE seq = 3").fetchone()[0]
    audit.bind_key(db, key)
    try:
        assert reanchor(db)
        assert not reanchor(db)
        row = db.execute("SELECT action, details, key_id FROM audit WHERE seq = 4").fetchone()
        assert row[0] == audit.ANCHOR_ACTION
        assert row[2] == key.key_id
        assert json.loads(row[1]) == {"legacy_head": legacy_head, "legacy_rows": 3}
        audit.append(db, "op", "y", "p")
        assert audit.verify(db).ok
        # tampering with the legacy part is now caught by the keyed anchor
        _forge(db, 2, '{"x":1}')
        assert not audit.verify(db).ok
    finally:
        audit.bind_key(db, None)


def test_retention_prunes_behind_a_checkpoint_and_stays_verifiable(
    keyed: sqlite_utils.Database,
) -> None:
    now = 2_000_000_000.0
    for i in range(10):
        audit.append(keyed, "op", "consent.granted", f"p{i}", now=now - 2000 * DAY + i)
    for i in range(30):
        audit.append(keyed, "mqtt:k", "command.rejected", "unlock", {"i": i}, now=now - 5 + i / 10)
    audit.append(keyed, "op", "consent.granted", "young", now=now)
    rep = prune(keyed, now=now, max_age_days=1100, max_rows=12, record_cutoff=now - 1096 * DAY)
    assert rep.pruned > 10  # the old records and the oldest rejections
    left = keyed.execute("SELECT count(*) FROM audit").fetchone()[0]
    assert left <= 13
    assert keyed.execute("SELECT 1 FROM audit WHERE subject = 'young'").fetchone()
    assert audit.verify(keyed).ok
    # deleting more old rows without a checkpoint is a break
    first = keyed.execute("SELECT min(seq) FROM audit").fetchone()[0]
    keyed.execute("DELETE FROM audit WHERE seq = ?", [first])
    assert not audit.verify(keyed).ok


def test_size_prune_sheds_a_flood_and_carries_young_records(keyed: sqlite_utils.Database) -> None:
    """2,000 forged commands after the records: the cap holds, no record is lost."""
    now = 2_000_000_000.0
    for i in range(5):
        audit.append(keyed, "op", "consent.granted", f"p{i}", {"i": i}, now=now - 100 + i)
    for i in range(2000):
        audit.append(keyed, "mqtt:?", "command.rejected", "unlock", {"i": i}, now=now)
    rep = prune(keyed, now=now, max_age_days=1100, max_rows=100, record_cutoff=now - 1096 * DAY)
    assert rep.carried == 5
    total = keyed.execute("SELECT count(*) FROM audit").fetchone()[0]
    assert total <= 100 + 1 + 5
    assert audit.verify(keyed).ok
    kept = keyed.execute(
        "SELECT subject, ts, details FROM audit WHERE action = 'consent.granted' ORDER BY seq"
    ).fetchall()
    assert [r[0] for r in kept] == [f"p{i}" for i in range(5)]
    assert [r[1] for r in kept] == [now - 100 + i for i in range(5)]  # original times
    first = json.loads(kept[0][2])
    assert first["details"] == {"i": 0}
    assert first["carried_from"]["seq"] == 2  # after the anchor
    # a second run with nothing new prunes nothing and keeps the chain whole
    again = prune(keyed, now=now, max_age_days=1100, max_rows=200, record_cutoff=now - 1096 * DAY)
    assert again.pruned == 0
    assert audit.verify(keyed).ok


def test_tampered_rows_are_never_pruned(keyed: sqlite_utils.Database) -> None:
    now = 2_000_000_000.0
    for i in range(10):
        audit.append(keyed, "op", "consent.granted", f"p{i}", now=now - 2000 * DAY)
    audit.append(keyed, "op", "consent.granted", "young", now=now)
    keyed.execute("UPDATE audit SET subject = 'hidden' WHERE seq = 3")
    rep = prune(keyed, now=now, max_age_days=1100, max_rows=100, record_cutoff=now - 1096 * DAY)
    assert rep.pruned == 0
    assert keyed.execute("SELECT subject FROM audit WHERE seq = 3").fetchone()[0] == "hidden"


def test_published_head_detects_rollback(keyed: sqlite_utils.Database, key: audit.ChainKey) -> None:
    for i in range(5):
        audit.append(keyed, "op", "x", f"p{i}")
    head = keyed.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    published = head_payload(key, head[0], head[1])
    assert b"p4" not in published
    assert head[1].encode() not in published
    assert check_published(keyed, key, published) is None
    # roll back the newest two rows and the local head (a restored old copy)
    keyed.execute("DELETE FROM audit WHERE seq > 4")
    h4 = keyed.execute("SELECT hash FROM audit WHERE seq = 4").fetchone()[0]
    keyed.execute("UPDATE kv SET value = ? WHERE key = ?", [f"4:{h4}", audit.HEAD_KEY])
    assert audit.verify(keyed).ok  # locally consistent...
    assert check_published(keyed, key, published) is not None  # ...but not what was published


class _Outbox:
    def __init__(self) -> None:
        self.put: list[tuple[str, bytes, bool]] = []

    def put_raw(self, event_id: str, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.put.append((topic, payload, retain))


def _watch(db: sqlite_utils.Database, emitted: list[Any], **kw: Any) -> AuditWatch:
    async def run_db(fn: Any, *a: Any, **k: Any) -> Any:
        return fn(*a, **k)

    return AuditWatch(db, run_db, emitted.append, "site1", "gate1", **kw)


def test_watch_publishes_head_and_alerts_on_break(keyed: sqlite_utils.Database) -> None:
    emitted: list[Any] = []
    outbox = _Outbox()
    watch = _watch(keyed, emitted, outbox=outbox, base_topic="ag/site1/gate1")
    for i in range(3):
        audit.append(keyed, "op", "x", f"p{i}")

    async def scenario() -> None:
        assert (await watch.check()).ok
        await watch.publish_head()
        assert outbox.put
        assert outbox.put[-1][0] == "ag/site1/gate1/audit/head"
        assert outbox.put[-1][2] is True  # retained
        keyed.execute("UPDATE audit SET subject = 'forged' WHERE seq = 2")
        assert not (await watch.check()).ok
        await watch.check()  # the same break alerts once

    asyncio.run(scenario())
    alerts = [e for e in emitted if isinstance(e, ev.ComplianceAlert)]
    assert [a.code for a in alerts] == [ev.ComplianceCode.AUDIT_CHAIN_BROKEN]
    assert alerts[0].value == 2


def test_watch_alerts_when_published_head_is_gone(
    keyed: sqlite_utils.Database, key: audit.ChainKey
) -> None:
    for i in range(3):
        audit.append(keyed, "op", "x", f"p{i}")
    h = keyed.execute("SELECT hash FROM audit WHERE seq = 3").fetchone()[0]
    published = head_payload(key, 9, hashlib.sha256(h.encode()).hexdigest())
    emitted: list[Any] = []

    async def retained(topic: str) -> bytes | None:
        return published

    watch = _watch(keyed, emitted, base_topic="ag/s/g", read_retained=retained)
    asyncio.run(watch.check())
    assert [e.code for e in emitted] == [ev.ComplianceCode.AUDIT_CHAIN_BROKEN]


def test_watch_alerts_when_people_count_crosses_thresholds(db: sqlite_utils.Database) -> None:
    emitted: list[Any] = []
    counts = {"n": 0}

    async def others() -> int:
        return counts["n"]

    watch = _watch(db, emitted, other_gate_counts=others, thresholds=Thresholds(80, 100))

    async def scenario() -> None:
        await watch.check_counts()
        counts["n"] = 85
        await watch.check_counts()
        await watch.check_counts()  # no repeat while the level holds
        counts["n"] = 120
        await watch.check_counts()

    asyncio.run(scenario())
    assert [(e.code, e.value) for e in emitted] == [
        (ev.ComplianceCode.CAPACITY_WARNING, 85),
        (ev.ComplianceCode.FILING_REQUIRED, 120),
    ]
