"""Issue 18 item 10e: the access log holds a keyed pseudonym, never the person id; old rows
are pseudonymised, stale last-seen times cleared and long-expired people deleted."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from types import SimpleNamespace

import sqlite_utils

from gateway.privacy import access_log, audit, people
from gateway.privacy.retention import RetentionPolicy, run_purge
from gateway.privacy.vault import Vault
from tests.conftest import built_gateway

from .conftest import FakeGallery

DAY = 86400.0


def test_gate_access_log_stores_pseudonym_not_person_id(minimal_config: Path) -> None:
    async def main() -> tuple[list[tuple[object, ...]], str]:
        async with built_gateway(minimal_config) as gw:
            pid = people.add_person(gw.db, "Resident")
            decision = SimpleNamespace(
                door="main", granted=True, reason=SimpleNamespace(value="granted"), person_id=pid
            )
            gw.controller._log_access(decision, None, 1000.0)
            rows = gw.db.execute("SELECT person_id, subject FROM access_log").fetchall()
            return rows, access_log.subject_of(access_log.key_from_device(gw.keys.device), pid)

    rows, expected = asyncio.run(main())
    assert rows == [(None, expected)]
    assert len(expected) == 32


def test_without_key_no_person_reference_is_stored(db: sqlite_utils.Database) -> None:
    access_log.record(
        db, ts=1.0, door="d", method="card", granted=True, reason="ok", person_id="p1"
    )
    assert db.execute("SELECT person_id, subject FROM access_log").fetchone() == (None, None)


def test_retention_pseudonymises_and_purges_people(db: sqlite_utils.Database, vault: Vault) -> None:
    device = secrets.token_bytes(32)
    key = access_log.key_from_device(device)
    access_log.bind_key(db, key)
    audit.bind_key(db, audit.ChainKey.from_device(device))
    try:
        now = 2_000_000_000.0
        seen = people.add_person(db, "Seen long ago")
        recent = people.add_person(db, "Seen recently")
        gone = people.add_person(db, "Moved out", valid_until=now - 4 * 365 * DAY)
        db.execute("UPDATE people SET last_seen_at = ? WHERE id = ?", [now - 500 * DAY, seen])
        db.execute("UPDATE people SET last_seen_at = ? WHERE id = ?", [now - 5 * DAY, recent])
        db.execute("UPDATE people SET created_at = ? WHERE id = ?", [now - 5 * 365 * DAY, gone])
        # rows written by the old code: raw person ids
        for pid, ts in ((seen, now - 3 * DAY), (recent, now - DAY), (seen, now - 40 * DAY)):
            db.execute(
                "INSERT INTO access_log (ts, door, method, granted, reason, person_id)"
                " VALUES (?, 'main', 'card', 1, 'granted', ?)",
                [ts, pid],
            )
        policy = RetentionPolicy(people_inactive_days=400)
        report = run_purge(db, vault, FakeGallery({}), policy, now)
        assert report.access_log == 1  # the 40-day-old row
        assert report.access_log_pseudonymised == 2
        assert (
            db.execute("SELECT count(*) FROM access_log WHERE person_id IS NOT NULL").fetchone()[0]
            == 0
        )
        subjects = {r[0] for r in db.execute("SELECT subject FROM access_log").fetchall()}
        assert subjects == {access_log.subject_of(key, seen), access_log.subject_of(key, recent)}
        assert report.last_seen_cleared == 1
        last_seen = dict(db.execute("SELECT id, last_seen_at FROM people").fetchall())
        assert last_seen[seen] is None
        assert last_seen[recent] == now - 5 * DAY
        assert report.people_deleted == 1
        assert gone not in last_seen
        assert audit.verify(db).ok
        again = run_purge(db, vault, FakeGallery({}), policy, now)
        assert again.access_log_pseudonymised == again.people_deleted == 0
    finally:
        access_log.bind_key(db, None)
        audit.bind_key(db, None)
