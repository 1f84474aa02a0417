"""Credentials keep deciding from memory when the state database fails (issue #8)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from gateway.credentials.hashing import (
    LockedOutError,
    LockoutEvent,
    LockoutPolicy,
    PinHashParams,
    PinTerms,
)
from gateway.credentials.store import Credentials
from gateway.hardware.events import CardRead
from gateway.store import database as store

KEY = bytes(range(32))
FAST = PinHashParams(time_cost=1, memory_kib=1024, parallelism=1)
CARD_NO, PIN, DURESS, VISITOR = 8675309, "135790", "246801", "5555"


class FlakyDb:
    """A sqlite_utils.Database whose ``execute`` fails like a locked/broken store."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.inner = db
        self.down = False
        self.calls = 0

    def execute(self, sql: str, params: Any = None) -> Any:
        self.calls += 1
        if self.down:
            raise sqlite3.OperationalError("database is locked")
        return self.inner.execute(sql, params) if params is not None else self.inner.execute(sql)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def people(db: sqlite_utils.Database) -> sqlite_utils.Database:
    for pid, role in (("p1", "resident"), ("p2", "resident"), ("v1", "visitor")):
        db.execute(
            "INSERT INTO people (id, display_name, role, created_at) VALUES (?, ?, ?, 0)",
            [pid, pid, role],
        )
    return db


def setup(
    events: list[LockoutEvent] | None = None, **kw: Any
) -> tuple[Credentials, FlakyDb, Clock]:
    flaky = FlakyDb(people(store.connect(":memory:")))
    clock = Clock()
    kw.setdefault("db_retry_s", 0.0)
    c = Credentials(
        flaky,  # type: ignore[arg-type]  # duck-typed stand-in for sqlite_utils.Database
        KEY,
        hash_params=FAST,
        on_lockout=events.append if events is not None else None,
        clock=clock,
        **kw,
    )
    c.add_card("p1", 7, CARD_NO, now=0.0)
    c.set_pin("p1", PIN, now=0.0)
    c.set_pin("p1", DURESS, now=0.0, terms=PinTerms("duress"))
    c.set_pin("v1", VISITOR, now=0.0, terms=PinTerms("visitor", expires_at=500.0, uses_left=2))
    return c, flaky, clock


def card(number: int = CARD_NO, reader: str = "gate-in") -> CardRead:
    return CardRead(reader, number, 7, "H10301", 26)


def test_card_and_pin_decisions_continue_from_cache(caplog: pytest.LogCaptureFixture) -> None:
    c, flaky, _ = setup()
    assert c.degraded is None
    flaky.down = True
    with caplog.at_level(logging.DEBUG, logger="gateway.credentials.store"):
        assert c.identify_card(card()) == "p1"
        assert c.identify_card(card(CARD_NO + 1)) is None
        m = c.identify_pin(PIN, reader="gate-in", now=1.0)
        assert m is not None
        assert (m.person_id, m.kind) == ("p1", "normal")
        claimed = c.verify_pin_for("p1", PIN, reader="gate-in", now=2.0)
        assert claimed is not None
        assert not claimed.duress
        assert c.verify_pin_for("p2", PIN, reader="gate-in", now=3.0) is None
        duress = c.identify_pin(DURESS, reader="gate-in", now=4.0)
        assert duress is not None
        assert (duress.person_id, duress.duress) == ("p1", True)
        duress_1to1 = c.verify_pin_for("p1", DURESS, reader="gate-in", now=5.0)
        assert duress_1to1 is not None
        assert duress_1to1.duress
    assert c.degraded is not None
    assert "database is locked" in c.degraded
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, "the degradation is logged once"
    assert "gate-in" in errors[0].getMessage()
    text = caplog.text
    for secret in (str(CARD_NO), PIN, DURESS):
        assert secret not in text


def test_lockout_counts_in_memory_and_is_written_back() -> None:
    events: list[LockoutEvent] = []
    c, flaky, _ = setup(events, lockout=LockoutPolicy(free_attempts=3, base_s=30))
    flaky.down = True
    for i, t in enumerate((10.0, 11.0, 12.0)):
        assert c.identify_pin(f"00{i}0", reader="kp", now=t) is None
    assert events == [LockoutEvent("reader", "kp", 3, 42.0, 12.0)]
    with pytest.raises(LockedOutError):
        c.identify_pin(PIN, reader="kp", now=20.0)  # even the right PIN waits
    assert c.locked_for("reader", "kp", 20.0) == pytest.approx(22.0)
    assert c.identify_pin(PIN, reader="other", now=20.0) is not None  # per reader
    # person lockout (card+PIN) from memory too
    person_events = LockoutPolicy(free_attempts=2, base_s=10)
    c.lockout = person_events
    assert c.verify_pin_for("p1", "9999", reader="a", now=30.0) is None
    assert c.verify_pin_for("p1", "9998", reader="b", now=31.0) is None
    with pytest.raises(LockedOutError):
        c.verify_pin_for("p1", PIN, reader="c", now=32.0)
    assert c.degraded is not None
    assert not flaky.inner.execute("SELECT * FROM lockouts").fetchall()
    # the store comes back: counters reach the table and keep working from there
    flaky.down = False
    assert c.locked_for("reader", "kp", 20.0) == pytest.approx(22.0)
    rows = {
        (r[0], r[1]): r[2]
        for r in flaky.inner.execute("SELECT scope, subject, failures FROM lockouts")
    }
    assert rows[("reader", "kp")] == 3
    assert rows[("person", "p1")] == 2
    assert c.degraded is None


def test_visitor_use_taken_from_cache_and_written_back() -> None:
    c, flaky, _ = setup()
    flaky.down = True
    m = c.identify_pin(VISITOR, reader="kp", now=1.0, consume=True)
    assert m is not None
    assert m.uses_left == 2
    m = c.identify_pin(VISITOR, reader="kp", now=2.0)
    assert m is not None
    assert m.uses_left == 1
    assert c.consume_use(m.pin_id)
    assert c.identify_pin(VISITOR, reader="kp2", now=3.0) is None  # used up, even offline
    assert not c.consume_use(m.pin_id)
    assert c.degraded is not None
    # a refresh while the store is down keeps the cache (and the pending uses)
    assert not c.refresh()
    assert c.identify_pin(VISITOR, reader="kp3", now=4.0) is None
    flaky.down = False
    assert c.refresh()
    left = flaky.inner.execute("SELECT uses_left FROM pins WHERE id = ?", [m.pin_id]).fetchone()
    assert left[0] == 0
    assert c.degraded is None
    assert c.identify_pin(VISITOR, reader="kp4", now=5.0) is None


def test_reads_return_to_the_database_after_recovery() -> None:
    c, flaky, clock = setup(db_retry_s=5.0)
    flaky.down = True
    assert c.identify_card(card()) == "p1"
    calls = flaky.calls
    assert c.identify_card(card()) == "p1"
    assert flaky.calls == calls, "while degraded the store is not retried before db_retry_s"
    flaky.down = False
    # a change made behind the object's back (another process) is invisible to the cache
    flaky.inner.execute("UPDATE cards SET revoked_at = 1")
    assert c.identify_card(card()) == "p1"  # still inside the retry window: cache
    clock.t += 5.0
    assert c.identify_card(card()) is None  # the database answers again
    assert c.degraded is None
    flaky.down = True
    assert c.identify_card(card()) is None  # ...and its answer updated the cache


def test_writes_through_the_object_update_the_cache() -> None:
    c, flaky, _ = setup()
    assert c.revoke_card(7, CARD_NO, now=1.0)
    assert c.revoke_pins("p1", now=1.0, kind="normal") == 1
    c.add_card("p2", 7, CARD_NO + 5, now=1.0)
    c.set_pin("p2", "97531", now=1.0)
    flaky.down = True
    assert c.identify_card(card()) is None  # a revoked card never comes back from memory
    assert c.identify_pin(PIN, reader="kp", now=2.0) is None
    assert c.identify_card(card(CARD_NO + 5)) == "p2"
    m = c.identify_pin("97531", reader="kp", now=3.0)
    assert m is not None
    assert m.person_id == "p2"


def test_refresh_loads_rows_written_elsewhere() -> None:
    c, flaky, _ = setup()
    other = Credentials(flaky.inner, KEY, hash_params=FAST)  # e.g. the enrolment CLI
    other.add_card("p2", 9, 4242, now=1.0)
    other.revoke_card(7, CARD_NO, now=1.0)
    assert c.refresh()
    flaky.down = True
    assert c.identify_card(CardRead("r", 4242, 9, "H10301", 26)) == "p2"
    assert c.identify_card(card()) is None


def test_real_write_lock_keeps_lockout_counting(tmp_path: Path) -> None:
    """Another connection holds the write lock: counters go to memory, then to the table."""
    db = people(store.connect(tmp_path / "state.db"))
    db.execute("PRAGMA busy_timeout = 50")
    events: list[LockoutEvent] = []
    c = Credentials(
        db,
        KEY,
        hash_params=FAST,
        lockout=LockoutPolicy(free_attempts=2, base_s=30),
        on_lockout=events.append,
        db_retry_s=0.0,
    )
    c.set_pin("p1", PIN, now=0.0)
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        assert c.identify_pin("0000", reader="kp", now=1.0) is None
        assert c.identify_pin("0001", reader="kp", now=2.0) is None
        assert [e.failures for e in events] == [2]
        assert c.degraded is not None
        with pytest.raises(LockedOutError):
            c.identify_pin(PIN, reader="kp", now=3.0)
        holder.execute("COMMIT")
    finally:
        holder.close()
    assert c.locked_for("reader", "kp", 3.0) == pytest.approx(29.0)
    assert db.execute("SELECT failures FROM lockouts WHERE subject = 'kp'").fetchone()[0] == 2
    assert c.degraded is None
    db.close()


def test_legacy_index_rows_reindexed_and_still_served_offline() -> None:
    flaky = FlakyDb(people(store.connect(":memory:")))
    Credentials(flaky.inner, KEY, hash_params=FAST).set_pin("p1", PIN, now=0.0)  # legacy index
    c = Credentials(
        flaky,  # type: ignore[arg-type]  # duck-typed stand-in for sqlite_utils.Database
        KEY,
        index_key=bytes(range(50, 82)),
        hash_params=FAST,
        db_retry_s=0.0,
    )
    flaky.down = True
    m = c.identify_pin(PIN, reader="kp", now=1.0)  # legacy bucket, from memory
    assert m is not None
    flaky.down = False
    assert c.identify_pin(PIN, reader="kp", now=2.0) is not None  # re-indexed in the store
    row = flaky.inner.execute("SELECT pin_index FROM pins WHERE id = ?", [m.pin_id]).fetchone()
    assert row[0] == c.pin_index(PIN)
    flaky.down = True
    m2 = c.identify_pin(PIN, reader="kp", now=3.0)  # and in memory, in its new bucket
    assert m2 is not None
    assert m2.person_id == "p1"
    assert sum(len(b) for b in c._cache.buckets.values()) == 1


def test_refresh_if_changed_sees_same_connection_writes() -> None:
    c, flaky, _ = setup()
    c.refresh_if_changed()  # writes through the object since construction: one reload
    assert not c.refresh_if_changed()  # nothing changed since the last load
    # e.g. a person purge on the daemon's own connection (cascade), unseen by data_version
    flaky.inner.execute("DELETE FROM pins WHERE person_id = 'p1'")
    flaky.inner.execute("UPDATE cards SET revoked_at = 5 WHERE person_id = 'p1'")
    assert c.refresh_if_changed()
    assert not c.refresh_if_changed()
    flaky.down = True
    assert not c.refresh_if_changed()
    assert c.identify_card(card()) is None
    assert c.identify_pin(PIN, reader="kp", now=6.0) is None
