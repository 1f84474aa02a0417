"""The one transaction helper: write transactions nest or refuse to, reads share a snapshot."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from gateway.store import database as store
from gateway.store.tx import snapshot, transaction


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM kv").fetchone()[0])


def _insert_then_fail(db: sqlite_utils.Database, *, nested: bool) -> None:
    with transaction(db):
        if nested:
            with transaction(db):
                db.execute("INSERT INTO kv VALUES ('n', '1')")
            assert db.conn.in_transaction  # the inner block did not commit
        with transaction(db.conn):
            db.execute("INSERT INTO kv VALUES ('b', '2')")
        raise RuntimeError


def test_transaction_commits(tmp_path: Path) -> None:
    db = store.connect(tmp_path / "s.db")
    with transaction(db) as conn:
        assert conn is db.conn
        assert conn.in_transaction
        conn.execute("INSERT INTO kv VALUES ('a', '1')")
    assert not db.conn.in_transaction
    assert _count(db.conn) == 1


@pytest.mark.parametrize("nested", [False, True])
def test_inner_blocks_join_and_the_outer_rolls_back(tmp_path: Path, nested: bool) -> None:
    db = store.connect(tmp_path / "s.db")
    with pytest.raises(RuntimeError):
        _insert_then_fail(db, nested=nested)
    assert not db.conn.in_transaction
    assert _count(db.conn) == 0


def test_own_transaction_refuses_to_join(tmp_path: Path) -> None:
    db = store.connect(tmp_path / "s.db")
    with transaction(db):
        own = transaction(db, join=False)
        with pytest.raises(sqlite3.OperationalError):
            own.__enter__()


def test_snapshot_sees_one_moment(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    reader, writer = store.connect(path), store.connect(path)
    with snapshot(reader) as conn:
        before = _count(conn)
        writer.execute("INSERT INTO kv VALUES ('a', '1')")
        assert _count(conn) == before  # a write after the snapshot began is not seen
    assert not reader.conn.in_transaction
    assert _count(reader.conn) == before + 1


class _CommitFailsOnce(sqlite3.Connection):
    """A connection whose next ``COMMIT`` fails, as on a full disk or an I/O error."""

    fail_next_commit = False

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:  # type: ignore[override]
        if sql == "COMMIT" and self.fail_next_commit:
            self.fail_next_commit = False
            raise sqlite3.OperationalError("disk I/O error")
        return super().execute(sql, *args)


@pytest.mark.parametrize("block", [transaction, snapshot])
def test_a_failed_commit_ends_the_transaction(tmp_path: Path, block: object) -> None:
    path = tmp_path / "t.db"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)")
    setup.close()
    conn = sqlite3.connect(path, isolation_level=None, factory=_CommitFailsOnce)
    assert isinstance(conn, _CommitFailsOnce)
    conn.fail_next_commit = True
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"), block(conn):  # type: ignore[operator]
        conn.execute("INSERT INTO kv VALUES ('lost', '1')")
    assert not conn.in_transaction  # not left open for the next block to join
    with transaction(conn):
        conn.execute("INSERT INTO kv VALUES ('kept', '2')")
    other = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    assert [r[0] for r in other.execute("SELECT k FROM kv")] == ["kept"]
    other.execute("INSERT INTO kv VALUES ('other', '3')")  # the write lock was released
    other.close()
    conn.close()
