"""Issue 18 item 6: access events survive a locked database, kill -9 and power cuts; a
returning broker is found within 5 s."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.mqtt.client import MqttService, MqttSettings
from gateway.mqtt.events import AccessGranted
from gateway.mqtt.outbox import Outbox
from gateway.mqtt.spill import SUFFIX
from gateway.mqtt.topics import Topics
from gateway.store import database as store
from tests.mosquitto import Mosquitto
from tests.mqtt.mqtt_support import Collector, first_occurrences

TOPICS = Topics("access", "site1", "gate1")
PROC = Path(__file__).with_name("outbox_proc.py")


def _event() -> AccessGranted:
    return AccessGranted(site="site1", gate="gate1", door="main", method="card")


def _rows(db_path: Path) -> list[str]:
    conn = sqlite3.connect(db_path)
    try:
        return [r[0] for r in conn.execute("SELECT id FROM outbox ORDER BY seq")]
    finally:
        conn.close()


@contextlib.contextmanager
def write_locked(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Another process's writer holding the database's write lock."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_outbox_commits_are_fsynced(db_path: Path) -> None:
    """synchronous=FULL on the outbox connection: a power cut cannot roll a put back."""
    db = store.connect(db_path, busy_timeout_ms=200)
    Outbox(db, TOPICS)
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_events_held_while_locked_are_journalled_and_recovered(db_path: Path) -> None:
    outbox = Outbox(store.connect(db_path, busy_timeout_ms=50), TOPICS, retry_db_s=60)
    with write_locked(db_path):
        ids = []
        for _ in range(3):
            ev = _event()
            outbox.put(ev)
            ids.append(str(ev.id))
        stats = outbox.stats()
        assert (stats.in_memory, stats.journalled) == (3, 3)
        assert stats.degraded is not None
        journal = Path(str(db_path) + SUFFIX)
        with journal.open("ab") as f:  # a crash tore the next record mid-write
            f.write(b'\n{"id":"torn","topic":"x","payl')
    del outbox  # "kill -9": nothing flushed, nothing closed cleanly
    reopened = Outbox(store.connect(db_path, busy_timeout_ms=50), TOPICS)
    assert _rows(db_path) == ids
    assert reopened.stats().journalled == 0
    assert journal.read_bytes() == b""


def test_memory_bound_holds_and_journal_keeps_only_what_memory_holds(db_path: Path) -> None:
    outbox = Outbox(store.connect(db_path, busy_timeout_ms=20), TOPICS, memory_max=5, retry_db_s=60)
    with write_locked(db_path):
        ids = []
        for _ in range(30):
            ev = _event()
            outbox.put(ev)
            ids.append(str(ev.id))
        stats = outbox.stats()
        assert stats.in_memory == 5
        assert stats.dropped_total == 25
        assert stats.journalled <= 2 * 5
    Outbox(store.connect(db_path, busy_timeout_ms=20), TOPICS)
    rows = _rows(db_path)  # the newest, in order: at least what memory held, at most 2x
    assert 5 <= len(rows) <= 10
    assert rows == ids[-len(rows) :]


def test_limit_journal_unwritable_too_events_only_in_memory_and_said(db_path: Path) -> None:
    """The stated limit: database AND journal failing (disk full, read-only): memory only,
    bounded, and health says how many events a kill -9 would lose and why."""
    outbox = Outbox(
        store.connect(db_path, busy_timeout_ms=20),
        TOPICS,
        retry_db_s=60,
        spill_path=db_path.parent / "missing-dir" / "spill",
    )
    with write_locked(db_path):
        for _ in range(3):
            outbox.put(_event())
    stats = outbox.stats()
    assert (stats.in_memory, stats.journalled) == (3, 0)
    assert stats.journal_failed is not None
    assert "No such file" in stats.journal_failed


def test_buffer_persisted_without_broker_and_without_new_events(db_path: Path) -> None:
    outbox = Outbox(store.connect(db_path, busy_timeout_ms=20), TOPICS, retry_db_s=0.2)
    with write_locked(db_path):
        ids = []
        for _ in range(4):
            ev = _event()
            outbox.put(ev)
            ids.append(str(ev.id))
    assert _rows(db_path) == []

    async def go() -> None:
        task = asyncio.create_task(outbox.persist_loop())
        try:
            for _ in range(100):
                if outbox.stats().in_memory == 0:
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(go())
    assert _rows(db_path) == ids
    stats = outbox.stats()
    assert (stats.in_memory, stats.journalled, stats.degraded) == (0, 0, None)


class _Proc:
    """outbox_proc.py driven over its stdin/stdout."""

    def __init__(self, db_path: Path, port: int) -> None:
        self.p = subprocess.Popen(
            [sys.executable, str(PROC), str(db_path), str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        assert self.line(20) == "READY"

    def _pump(self) -> None:
        assert self.p.stdout is not None
        for out in self.p.stdout:
            self.lines.put(out.strip())

    def line(self, within: float = 10.0) -> str:
        try:
            return self.lines.get(timeout=within)
        except queue.Empty:
            raise AssertionError("no output from outbox_proc in time") from None

    def send(self, text: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(text + "\n")
        self.p.stdin.flush()

    def put(self, n: int) -> list[str]:
        self.send(f"put {n}")
        return [self.line().split()[1] for _ in range(n)]

    def stats(self) -> dict[str, Any]:
        self.send("stats")
        out = self.line()
        assert out.startswith("STATS ")
        doc: dict[str, Any] = json.loads(out[6:])
        return doc

    def kill9(self) -> None:
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(5)
        for f in (self.p.stdin, self.p.stdout):
            if f is not None:
                f.close()


def _wait(pred: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.mosquitto
@pytest.mark.parametrize("lock", ["released_before_kill", "held_through_kill"])
def test_events_buffered_under_db_lock_during_reconnect_survive_kill_9(
    broker: Mosquitto, db_path: Path, lock: str
) -> None:
    """The fault run's case: 0 of 8 access events were ever delivered."""
    proc = _Proc(db_path, broker.port)
    try:
        _wait(lambda: proc.stats()["connected"], 15, "first connection")
        broker.stop()  # the gate is now in its reconnect loop
        with write_locked(db_path):
            put_ids = proc.put(8)
            stats = proc.stats()
            assert stats["in_memory"] == 8  # the database refused them: held in memory
            if lock == "held_through_kill":
                proc.kill9()
        if lock == "released_before_kill":
            # the lock is gone but no new event comes and no broker: persisted anyway
            _wait(lambda: proc.stats()["in_memory"] == 0, 10, "buffer persisted")
            assert _rows(db_path) == put_ids
            proc.kill9()
    finally:
        if proc.p.poll() is None:
            proc.kill9()
    broker.start()

    async def deliver() -> list[str]:
        async with Collector(broker, TOPICS.events_wildcard) as col:
            proc2 = _Proc(db_path, broker.port)
            try:
                await col.wait_for(lambda c: set(put_ids) <= set(c.ids()), within=20)
            finally:
                proc2.kill9()
            return first_occurrences(col.ids())

    assert asyncio.run(deliver()) == put_ids


@pytest.mark.mosquitto
@pytest.mark.slow
def test_returning_broker_is_found_within_5_s(
    broker: Mosquitto, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default settings; jitter pinned at its worst (the longest sleep of each step)."""
    monkeypatch.setattr(random, "uniform", max)
    service = MqttService(
        MqttSettings(port=broker.port, client_id="gate1"),
        TOPICS,
        Outbox(store.connect(db_path, busy_timeout_ms=200), TOPICS),
    )

    async def until(pred: Any, within: float) -> float:
        t0 = time.monotonic()
        for _ in range(int(within / 0.02)):
            if pred():
                return time.monotonic() - t0
            await asyncio.sleep(0.02)
        raise AssertionError("timed out")

    async def go() -> float:
        task = asyncio.create_task(service.run())
        try:
            await until(lambda: service.connected, 15)
            await asyncio.to_thread(broker.stop)
            await until(lambda: not service.connected, 15)
            await asyncio.sleep(8.5)  # long enough for an uncapped backoff to reach 8 s
            await asyncio.to_thread(broker.start)
            return await until(lambda: service.connected, 30)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    took = asyncio.run(go())
    assert took < 5.0, f"reconnected {took:.1f} s after the broker returned"


def test_daemon_without_broker_still_retries_persisting_the_buffer(minimal_config: Path) -> None:
    """No broker configured: the outbox's persist loop is a supervised service of its own."""
    from tests.conftest import built_gateway

    text = minimal_config.read_text().replace("[mqtt]\nenabled = false", "[mqtt]\nenabled = true")
    minimal_config.write_text(text)

    async def go() -> list[str]:
        async with built_gateway(minimal_config) as gw:
            assert gw.mqtt is None
            assert gw.outbox is not None
            return [s.name for s in gw.daemon.services]

    assert "outbox" in asyncio.run(go())
