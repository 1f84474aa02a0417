"""Storage: permissions, WAL, foreign keys, migrations in one transaction, newer DB refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.errors import StorageError
from gateway.store import database as store
from gateway.store import schema


def test_new_database_is_private_wal_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.db"
    db = store.connect(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert db.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert {"people", "consents", "templates", "cards", "outbox", "audit"} <= set(db.table_names())
    assert store.integrity_ok(db)
    db.close()


def test_too_open_state_dir_is_tightened(tmp_path: Path) -> None:
    d = tmp_path / "state"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    store.connect(d / "state.db").close()
    assert oct(d.stat().st_mode & 0o777) == "0o700"


def test_foreign_keys_enforced(tmp_path: Path) -> None:
    db = store.connect(tmp_path / "s" / "x.db")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO cards (person_id, card_hmac, created_at) VALUES ('ghost', x'00', 0)"
        )


def test_newer_database_is_refused_with_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "s" / "x.db"
    store.connect(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 7}")
    conn.close()
    with pytest.raises(StorageError, match="newer than this gateway understands"):
        store.connect(path)


def test_failed_migration_leaves_database_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s" / "x.db"
    store.connect(path).close()
    broken = (*schema.MIGRATIONS, "CREATE TABLE extra (a INTEGER); CREATE TABLE broken (")
    monkeypatch.setattr(schema, "MIGRATIONS", broken)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(broken))
    with pytest.raises(StorageError):
        store.connect(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(broken) - 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "extra" not in tables, "a failed migration must roll back completely"


def test_memory_database_for_tests() -> None:
    db = store.connect(":memory:")
    assert "people" in db.table_names()


def test_upgrade_from_schema_1_keeps_data_and_announces_old_withdrawals_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway's schema-1 database upgrades in place: rows kept; withdrawals recorded
    there are announced once more (the old version missed some), except those that came
    from another gate, which are never fanned out."""
    path = tmp_path / "s" / "x.db"
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
        m.setattr(schema, "SCHEMA_VERSION", 1)
        old = store.connect(path)
        old.execute(
            "INSERT INTO withdrawal_receipts (id, person_id, channel, templates_erased, ts)"
            " VALUES ('r1', 'p1', 'cli', 2, 1.0), ('r0', 'p2', 'compound', 1, 0.5)"
        )
        old.conn.commit()
        old.close()
    db = store.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION >= 2
    rows = db.execute("SELECT id, announced FROM withdrawal_receipts ORDER BY ts").fetchall()
    assert [tuple(r) for r in rows] == [("r0", 1), ("r1", 0)]
    db.execute(
        "INSERT INTO withdrawal_receipts (id, person_id, channel, templates_erased, ts)"
        " VALUES ('r2', 'p1', 'cli', 0, 2.0)"
    )
    new = db.execute("SELECT announced FROM withdrawal_receipts WHERE id = 'r2'").fetchone()
    assert new[0] == 0  # a new receipt waits for the daemon to announce it
    db.close()
