"""Outbox without a broker: order, delete-after-ack, bounds, storage failure fallback."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlite_utils

from gateway.mqtt.events import DoorClosed, DoorOpened, EventsDropped, parse_event
from gateway.mqtt.outbox import Outbox
from gateway.mqtt.topics import Topics
from gateway.store import database as store

TOPICS = Topics("access", "site1", "gate1")


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeBroker:
    """Records publications; can fail after N acks (the connection 'drops')."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.got: list[tuple[str, dict[str, object]]] = []
        self.fail_after = fail_after

    async def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        await asyncio.sleep(0)
        if self.fail_after is not None and len(self.got) >= self.fail_after:
            raise ConnectionError("broker went away")
        self.got.append((topic, json.loads(payload)))


def rows(db: sqlite_utils.Database) -> int:
    return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


async def drain_until(
    outbox: Outbox, broker: FakeBroker, cond: Callable[[], bool], within: float = 5
) -> None:
    task = asyncio.create_task(outbox.drain(broker.publish, housekeeping_s=0.05))
    try:
        deadline = asyncio.get_running_loop().time() + within
        while not cond():
            if task.done():
                task.result()
            assert asyncio.get_running_loop().time() < deadline, "drain did not finish"
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await task


def ev(i: int) -> DoorOpened:
    return DoorOpened(site="site1", gate="gate1", door=f"d{i}")


def test_put_is_durable_before_publish_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = store.connect(path)
    ob = Outbox(db, TOPICS)
    events = [ev(i) for i in range(5)]
    for e in events:
        ob.put(e)
    assert rows(db) == 5
    db.conn.close()
    db2 = store.connect(path)
    ob2 = Outbox(db2, TOPICS)
    assert ob2.stats().pending == 5
    broker = FakeBroker()
    asyncio.run(drain_until(ob2, broker, lambda: rows(db2) == 0))
    assert [d["id"] for _, d in broker.got] == [str(e.id) for e in events]
    assert broker.got[0][0] == "access/site1/gate1/events/door.opened"


def test_rows_deleted_only_after_ack_and_resent_in_order() -> None:
    db = store.connect(":memory:")
    ob = Outbox(db, TOPICS, window=4, batch=8)
    events = [ev(i) for i in range(20)]
    for e in events:
        ob.put(e)
    broker = FakeBroker(fail_after=6)

    async def first() -> None:
        with pytest.raises(ConnectionError):
            await ob.drain(broker.publish)

    asyncio.run(first())
    acked = len(broker.got)
    assert acked == 6
    assert rows(db) == 20 - acked  # exactly the acknowledged rows were deleted
    broker.fail_after = None
    asyncio.run(drain_until(ob, broker, lambda: rows(db) == 0))
    ids = [d["id"] for _, d in broker.got]
    assert ids == [str(e.id) for e in events]  # nothing lost, in order, no duplicate here


def test_count_bound_drops_oldest_and_emits_events_dropped() -> None:
    db = store.connect(":memory:")
    ob = Outbox(db, TOPICS, max_events=100)
    events = [ev(i) for i in range(150)]
    for e in events:
        ob.put(e)
    assert rows(db) <= 101
    broker = FakeBroker()
    asyncio.run(drain_until(ob, broker, lambda: rows(db) == 0))
    dropped = [d for t, d in broker.got if t.endswith("/events/events_dropped")]
    assert dropped, "an explicit events_dropped event must be published"
    total = sum(int(str(d["count"])) for d in dropped)
    delivered = [d["id"] for t, d in broker.got if t.endswith("/door.opened")]
    assert total + len(delivered) == 150  # every event is either delivered or counted
    assert delivered == [str(e.id) for e in events[-len(delivered) :]]  # newest kept, in order
    assert all(isinstance(parse_event(json.dumps(d)), EventsDropped) for d in dropped)
    assert {d["reason"] for d in dropped} == {"count"}


def test_age_bound_drops_old_events() -> None:
    db = store.connect(":memory:")
    clock = Clock()
    ob = Outbox(db, TOPICS, max_age_s=60, clock=clock)
    for i in range(10):
        ob.put(ev(i))
    clock.t += 120
    fresh = DoorClosed(site="site1", gate="gate1", door="main")
    ob.put(fresh)
    broker = FakeBroker()
    asyncio.run(drain_until(ob, broker, lambda: rows(db) == 0))
    types = [t.rsplit("/", 1)[1] for t, _ in broker.got]
    assert sorted(types) == ["door.closed", "events_dropped"]
    dropped = next(d for t, d in broker.got if t.endswith("events_dropped"))
    assert dropped["count"] == 10
    assert dropped["reason"] == "age"


def test_storage_failure_falls_back_to_memory_and_repersists(tmp_path: Path) -> None:
    db = store.connect(tmp_path / "s.db")
    ob = Outbox(db, TOPICS, retry_db_s=0.0)
    before = [ev(i) for i in range(3)]
    for e in before:
        ob.put(e)
    db.conn.execute("PRAGMA query_only = ON")  # every write now fails like a locked/full disk
    during = [ev(10 + i) for i in range(4)]
    for e in during:
        ob.put(e)  # must not raise
    assert ob.degraded is not None
    assert ob.stats().in_memory == 4
    assert rows(db) == 3
    db.conn.execute("PRAGMA query_only = OFF")  # the database works again
    broker = FakeBroker()
    asyncio.run(drain_until(ob, broker, lambda: ob.stats().pending == 0 and rows(db) == 0))
    assert ob.degraded is None
    assert [d["id"] for _, d in broker.got] == [str(e.id) for e in before + during]


def test_disk_full_while_broker_up_still_delivers_from_memory(tmp_path: Path) -> None:
    db = store.connect(tmp_path / "s.db")
    ob = Outbox(db, TOPICS, retry_db_s=0.05)
    db.conn.execute("PRAGMA query_only = ON")  # permanently broken storage
    events = [ev(i) for i in range(5)]

    async def go(broker: FakeBroker) -> None:
        task = asyncio.create_task(ob.drain(broker.publish, housekeeping_s=0.05))
        await asyncio.sleep(0.05)
        for e in events:
            ob.put(e)
        for _ in range(200):
            if len(broker.got) == 5:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    broker = FakeBroker()
    asyncio.run(go(broker))
    assert [d["id"] for _, d in broker.got] == [str(e.id) for e in events]
    assert ob.degraded is not None  # still degraded: the DB never came back
    assert ob.stats().in_memory == 0


def test_memory_buffer_is_bounded_and_reports_drops(tmp_path: Path) -> None:
    db = store.connect(tmp_path / "s.db")
    ob = Outbox(db, TOPICS, memory_max=10, retry_db_s=0.0)
    db.conn.execute("PRAGMA query_only = ON")
    for i in range(25):
        ob.put(ev(i))
    assert ob.stats().in_memory == 10
    assert ob.stats().dropped_total == 15
    db.conn.execute("PRAGMA query_only = OFF")
    broker = FakeBroker()
    asyncio.run(drain_until(ob, broker, lambda: ob.stats().pending == 0 and rows(db) == 0))
    dropped = [d for t, d in broker.got if t.endswith("events_dropped")]
    assert len(dropped) == 1
    assert dropped[0]["count"] == 15
    assert dropped[0]["reason"] == "memory"


def test_buffer_repersisted_by_put_while_no_broker(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = store.connect(path)
    clock = Clock()
    ob = Outbox(db, TOPICS, retry_db_s=5.0, clock=clock)
    db.conn.execute("PRAGMA query_only = ON")
    early = [ev(i) for i in range(3)]
    for e in early:
        ob.put(e)
    assert ob.stats().in_memory == 3
    db.conn.execute("PRAGMA query_only = OFF")
    clock.t += 1  # before the retry time: stays in memory, order kept
    ob.put(ev(3))
    assert ob.stats().in_memory == 4
    clock.t += 10
    ob.put(ev(4))  # no drain is running (broker down): put itself writes the buffer back
    assert ob.degraded is None
    assert ob.stats().in_memory == 0
    db.conn.close()
    # a crash now loses nothing: everything is on disk, in order
    db2 = store.connect(path)
    stored = [r[0] for r in db2.execute("SELECT id FROM outbox ORDER BY seq")]
    assert stored[:3] == [str(e.id) for e in early]
    assert len(stored) == 5
