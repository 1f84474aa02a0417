"""Issue 18 item 10a/b: a withdrawal beside a concurrent reader is quick and leaves no bytes.

A reader connection (another process: a report, a backup, the daemon's watcher) holding a read
transaction pinned the WAL: the old code waited in SQLite's busy handler (5 s per checkpoint
try, VACUUM first) and left the wrapped key and the ciphertexts in the WAL.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import sqlite_utils

from gateway.privacy import consent, people
from gateway.privacy.scrub import PENDING_KEY, scrub_file
from gateway.privacy.vault import Vault
from gateway.services.withdrawal import withdraw

from .conftest import FakeGallery, random_embedding


def _file_bytes(db_path: Path) -> bytes:
    out = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(str(db_path) + suffix)
        if p.exists():
            out += p.read_bytes()
    return out


def _secrets(db: sqlite_utils.Database, pid: str) -> list[bytes]:
    rows = db.execute("SELECT ciphertext FROM templates WHERE person_id = ?", [pid]).fetchall()
    wrapped = db.execute("SELECT wrapped_key FROM face_keys WHERE person_id = ?", [pid]).fetchone()
    return [bytes(wrapped[0])] + [bytes(r[0]) for r in rows]


def _enrol(db: sqlite_utils.Database, vault: Vault, pid: str) -> list[bytes]:
    vault.store_templates(db, pid, np.stack([random_embedding(i) for i in range(5)]), model="m")
    bystander = people.add_person(db, "Bystander")
    vault.store_templates(db, bystander, random_embedding(77)[None, :], model="m")
    # leave the secrets both in the main file (checkpointed) and in WAL frames
    db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    db.execute("UPDATE people SET unit = 'x' WHERE id = ?", [pid])
    return _secrets(db, pid)


def _reader(db_path: Path) -> sqlite3.Connection:
    r = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False)
    r.execute("BEGIN")
    assert r.execute("SELECT count(*) FROM templates").fetchone()[0] == 6
    return r


def test_withdraw_beside_short_reader_is_fast_and_leaves_nothing(
    db: sqlite_utils.Database, db_path: Path, vault: Vault, gallery: FakeGallery, consented: str
) -> None:
    secrets_ = _enrol(db, vault, consented)
    assert all(s[:24] in _file_bytes(db_path) for s in secrets_)
    reader = _reader(db_path)
    releaser = threading.Timer(0.3, lambda: reader.execute("COMMIT"))
    releaser.start()
    t0 = time.monotonic()
    receipt = withdraw(db, vault, gallery, consented, "cli", actor="office-1")
    elapsed = time.monotonic() - t0
    releaser.join()
    reader.close()
    assert elapsed < 1.0, f"withdrawal took {elapsed:.2f} s"
    assert receipt.scrubbed
    data = _file_bytes(db_path)
    for s in secrets_:
        assert s[:24] not in data
        assert s[-24:] not in data
    assert db.execute("SELECT count(*) FROM templates").fetchone()[0] == 1  # bystander kept


def test_withdraw_beside_long_reader_returns_fast_and_scrubs_when_it_ends(
    db: sqlite_utils.Database, db_path: Path, vault: Vault, gallery: FakeGallery, consented: str
) -> None:
    secrets_ = _enrol(db, vault, consented)
    reader = _reader(db_path)
    t0 = time.monotonic()
    receipt = withdraw(db, vault, gallery, consented, "cli", actor="office-1")
    assert time.monotonic() - t0 < 1.0
    assert not receipt.scrubbed  # the reader's snapshot still holds the old pages
    assert db.execute("SELECT 1 FROM kv WHERE key = ?", [PENDING_KEY]).fetchone() is not None
    # the gate's writes are not blocked meanwhile (a card decision writes the access log)
    t1 = time.monotonic()
    db.execute(
        "INSERT INTO access_log (ts, door, method, granted, reason) VALUES (1, 'd', 'card', 1, '')"
    )
    assert time.monotonic() - t1 < 0.2
    # the background scrub (own connection, as the daemon runs it) finishes within a second
    # of the reader's end
    result: list[bool] = []
    worker = threading.Thread(target=lambda: result.append(scrub_file(db_path, budget_s=5.0)))
    worker.start()
    time.sleep(0.3)
    reader.execute("COMMIT")
    reader.close()
    t2 = time.monotonic()
    worker.join()
    assert result == [True]
    assert time.monotonic() - t2 < 1.0
    data = _file_bytes(db_path)
    for s in secrets_:
        assert s[:24] not in data
        assert s[-24:] not in data
    assert db.execute("SELECT 1 FROM kv WHERE key = ?", [PENDING_KEY]).fetchone() is None


def test_consent_ledger_records_the_real_channel(
    db: sqlite_utils.Database, vault: Vault, gallery: FakeGallery, consented: str
) -> None:
    for channel in ("cli", "mqtt", "gate", "web", "paper"):
        withdraw(db, vault, gallery, consented, channel, actor="x")
        assert consent.latest(db, consented).method == channel  # type: ignore[union-attr]


def test_daemon_withdrawal_beside_reader_is_fast_and_scrubbed_in_background(
    minimal_config: Path, notice: object
) -> None:
    """The daemon's path: the erase on the database thread, the WAL scrub on its own."""
    from tests.conftest import built_gateway

    async def main() -> None:
        async with built_gateway(minimal_config) as gw:
            gw.vault = Vault.from_root_keys(gw.keys.device, gw.keys.site)
            gw.gallery = FakeGallery({})
            pid = people.add_person(gw.db, "Resident")
            consent.grant(gw.db, pid, notice, method="paper", recorded_by="o", scope="device")
            secrets_ = _enrol(gw.db, gw.vault, pid)
            db_path = Path(gw.cfg.storage.database_path)
            reader = _reader(db_path)
            t0 = time.monotonic()
            result = await gw.withdrawals.withdraw(pid, "mqtt")
            assert time.monotonic() - t0 < 1.0
            assert result["templates_erased"] == 5
            # the database thread is free for card/PIN decisions meanwhile
            t1 = time.monotonic()
            await gw.run_db(gw.db.execute, "SELECT count(*) FROM cards")
            assert time.monotonic() - t1 < 0.2
            await asyncio.sleep(0.5)
            reader.execute("COMMIT")
            reader.close()
            for _ in range(20):  # the background scrub finishes within a second
                await asyncio.sleep(0.05)
                if not gw.withdrawals.scrubs:
                    break
            data = _file_bytes(db_path)
            for s in secrets_:
                assert s[:24] not in data
            assert consent.latest(gw.db, pid).method == "mqtt"  # type: ignore[union-attr]

    asyncio.run(main())
