"""Durable, ordered event outbox (table ``outbox``).

:meth:`Outbox.put` writes the event to SQLite (committed) before anything is published;
:meth:`Outbox.drain` publishes rows in ``seq`` order with QoS 1, a small window of
publications in flight (MQTT keeps them in order on one connection), and deletes rows only
after their PUBACK (deletes batched in one statement). After a reconnect, a restart or a
kill -9 the rows not yet acknowledged are sent again: duplicates are possible and carry the
same event ``id``; losses are not.

Durability: the outbox connection runs ``synchronous=FULL``: when :meth:`Outbox.put`
returns, the row's WAL frame is fsync'd, so neither a kill -9 nor a power cut loses it
(one fsync per event; the deletes after PUBACK are not fsync'd, a lost delete only
re-sends). If SQLite fails (locked, disk full, I/O error) events go to a bounded in-memory
buffer, are appended to an fsync'd spill journal beside the database
(:mod:`gateway.mqtt.spill`, read back at the next start), :attr:`Outbox.degraded` says why,
:meth:`stats` says how many are held, and :meth:`persist_loop` writes the buffer back to the
database as soon as it works again, with or without a broker.

Bounds: more than ``max_events`` rows or rows older than ``max_age_s`` are discarded oldest
first and replaced by one ``events_dropped`` event; the memory buffer holds ``memory_max``
events (the journal at most twice that).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlite_utils

from gateway.mqtt.events import BaseEvent, DropReason, EventsDropped
from gateway.mqtt.spill import SpillJournal, SpillRecord, default_path
from gateway.mqtt.topics import Topics
from gateway.store.tx import transaction

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, bool], Awaitable[None]]
"""``await publish(topic, payload, retain)`` returns after the broker's PUBACK."""

_DROPPED_SUFFIX = "/events/events_dropped"
_SYNC = {"FULL": "FULL", "NORMAL": "NORMAL"}  # the only values interpolated into the PRAGMA


@dataclass(frozen=True)
class OutboxItem:
    """One pending publication (``seq`` is None while it lives only in memory)."""

    seq: int | None
    id: str
    topic: str
    payload: bytes
    retain: bool
    created_at: float


@dataclass(frozen=True)
class OutboxStats:
    """Snapshot for the status topic and tests."""

    pending: int
    in_memory: int
    dropped_total: int
    published_total: int
    degraded: str | None
    journalled: int = 0
    """Events in the fsync'd spill journal (survive a kill -9 while only in memory)."""
    journal_failed: str | None = None
    """Why the spill journal cannot be written (those events are only in memory)."""


class Outbox:
    """Events stored before they are published, delivered in order, bounded."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        topics: Topics,
        *,
        max_events: int = 100_000,
        max_age_s: float = 7 * 86_400,
        memory_max: int = 10_000,
        batch: int = 256,
        window: int = 64,
        retry_db_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        spill_path: Path | None = None,
    ) -> None:
        if max_events < 2 or memory_max < 2 or window < 1 or batch < 1:
            raise ValueError("outbox bounds must be >= 2 and window/batch >= 1")
        self._db = db
        self._conn: sqlite3.Connection = db.conn
        self.topics = topics
        self.max_events = max_events
        self.max_age_s = max_age_s
        self.memory_max = memory_max
        self.batch = batch
        self.window = window
        self.retry_db_s = retry_db_s
        self._clock = clock
        self._lock = threading.RLock()
        self._memory: OrderedDict[int, OutboxItem] = OrderedDict()
        self._mem_counter = 0
        self._degraded: str | None = None
        self._next_db_retry = 0.0
        self._acked_undeleted: set[int] = set()
        self._dropped_total = 0
        self._published_total = 0
        self._memory_dropped = 0
        self._memory_dropped_first: float | None = None
        self._memory_dropped_last: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._spill = _journal_for(self._conn, spill_path, topics.gate)
        self.synchronous = synchronous
        try:
            # FULL: every committed put is fsync'd (WAL), so a power cut cannot roll it back
            self._set_sync(synchronous)
            row = self._conn.execute("SELECT COUNT(*), MIN(created_at) FROM outbox").fetchone()
            self._db_count = int(row[0])
            self._oldest: float | None = None if row[1] is None else float(row[1])
        except sqlite3.Error as exc:
            self._set_degraded(f"cannot read outbox table: {exc}")
            self._db_count = 0
            self._oldest = None
        # True when the last successful read found nothing beyond what memory holds
        self._db_maybe_pending = self._db_count > 0 or self._degraded is not None
        if self._db_count:
            log.info(
                "outbox %s: %d events pending from before restart", topics.gate, self._db_count
            )
        if self._spill is not None:
            self._recover_spill(self._spill)

    # ------------------------------------------------------------------ producing

    @property
    def degraded(self) -> str | None:
        """Why events are only in memory (None when the database works)."""
        return self._degraded

    def stats(self) -> OutboxStats:
        """Counters for the status topic. Called on the event loop: it does not wait for
        the lock a put holds while SQLite hangs (then the counters may be a moment old)."""
        locked = self._lock.acquire(timeout=0.01)
        try:
            return OutboxStats(
                pending=self._db_count + len(self._memory),
                in_memory=len(self._memory),
                dropped_total=self._dropped_total,
                published_total=self._published_total,
                degraded=self._degraded,
                journalled=0 if self._spill is None else self._spill.records,
                journal_failed=None if self._spill is None else self._spill.failed,
            )
        finally:
            if locked:
                self._lock.release()

    def put(self, event: BaseEvent, *, retain: bool = False) -> None:
        """Store ``event`` durably (or in memory when the database fails); never raises."""
        self.put_raw(str(event.id), self.topics.event(event.type), event.to_json(), retain=retain)

    def put_raw(self, event_id: str, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Store an already serialised publication."""
        now = self._clock()
        with self._lock:
            if self._degraded is not None and now >= self._next_db_retry:
                # also while no broker (drain not running): get the buffer back on disk
                self._try_repersist()
            if self._memory or self._degraded is not None:
                # keep order: once something is only in memory, newer events follow it there
                self._put_memory(OutboxItem(None, event_id, topic, payload, retain, now))
            else:
                try:
                    self._insert(event_id, topic, payload, retain, now)
                except sqlite3.Error as exc:
                    self._set_degraded(f"cannot write outbox: {exc}")
                    self._put_memory(OutboxItem(None, event_id, topic, payload, retain, now))
                else:
                    try:
                        self._enforce_bounds(now)
                    except sqlite3.Error as exc:  # the event itself is stored; retry later
                        log.error("outbox %s: cannot apply bounds: %s", self.topics.gate, exc)
        self._notify()

    def _insert(self, event_id: str, topic: str, payload: bytes, retain: bool, now: float) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO outbox (id, topic, payload, retain, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (event_id, topic, payload, int(retain), now),
        )
        self._db_count += 1
        self._db_maybe_pending = True
        if self._oldest is None:
            self._oldest = now

    def _set_sync(self, mode: Literal["FULL", "NORMAL"]) -> None:
        with contextlib.suppress(sqlite3.Error):  # a failing database is handled by the caller
            self._conn.execute(f"PRAGMA synchronous = {_SYNC[mode]}")

    def _put_memory(self, item: OutboxItem, *, journal: bool = True) -> None:
        while len(self._memory) >= self.memory_max:
            _, old = self._memory.popitem(last=False)
            self._memory_dropped += 1
            self._dropped_total += 1
            self._memory_dropped_first = self._memory_dropped_first or old.created_at
            self._memory_dropped_last = old.created_at
        self._mem_counter += 1
        self._memory[self._mem_counter] = item
        spill = self._spill
        if journal and spill is not None:
            if spill.records >= 2 * self.memory_max:  # compact: only what memory still holds
                spill.rewrite(_record(it) for it in self._memory.values())
            else:
                spill.append(_record(item))

    def _set_degraded(self, reason: str) -> None:
        if self._degraded is None:
            log.error(
                "outbox %s: storage failed, buffering events in memory (max %d): %s",
                self.topics.gate,
                self.memory_max,
                reason,
            )
        self._degraded = reason
        self._next_db_retry = self._clock() + self.retry_db_s

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(wake.set)

    # ------------------------------------------------------------------ bounds

    def _enforce_bounds(self, now: float) -> None:
        """Trim by count and age; replace what was dropped by one events_dropped row."""
        if self._db_count > self.max_events:
            # trim 1% extra so that a long outage does not trim on every put
            excess = self._db_count - self.max_events + max(1, self.max_events // 100)
            self._trim(
                "seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                (excess,),
                DropReason.COUNT,
                now,
            )
        if self._oldest is not None and self._oldest < now - self.max_age_s:
            self._trim("created_at < ?", (now - self.max_age_s,), DropReason.AGE, now)

    def _trim(self, where: str, params: tuple[Any, ...], reason: DropReason, now: float) -> None:
        conn = self._conn
        with transaction(conn):
            rows = conn.execute(
                f"SELECT seq, topic, payload, created_at FROM outbox WHERE {where}",  # noqa: S608 - fixed clauses
                params,
            ).fetchall()
            if not rows:
                return
            count = 0
            for _, topic, payload, _ in rows:
                count += _dropped_weight(topic, payload)
            conn.execute(f"DELETE FROM outbox WHERE {where}", params)  # noqa: S608 - fixed clauses
            first = min(float(r[3]) for r in rows)
            last = max(float(r[3]) for r in rows)
            ev = EventsDropped(
                site=self.topics.site,
                gate=self.topics.gate,
                count=count,
                reason=reason,
                oldest_ts=dt.datetime.fromtimestamp(first, dt.UTC),
                newest_ts=dt.datetime.fromtimestamp(last, dt.UTC),
            )
            conn.execute(
                "INSERT INTO outbox (id, topic, payload, retain, created_at)"
                " VALUES (?, ?, ?, 0, ?)",
                (str(ev.id), self.topics.event(ev.type), ev.to_json(), now),
            )
        self._db_count = self._db_count - len(rows) + 1
        self._dropped_total += count
        self._acked_undeleted.difference_update(int(r[0]) for r in rows)
        row = conn.execute("SELECT MIN(created_at) FROM outbox").fetchone()
        self._oldest = None if row[0] is None else float(row[0])
        log.warning(
            "outbox %s: bound by %s hit, dropped %d oldest events", self.topics.gate, reason, count
        )

    def expire(self) -> None:
        """Apply the age bound now (called periodically by :meth:`drain`)."""
        with self._lock:
            if self._degraded is None and not self._memory:
                try:
                    self._enforce_bounds(self._clock())
                except sqlite3.Error as exc:
                    self._set_degraded(f"cannot trim outbox: {exc}")

    # ------------------------------------------------------------------ recovery

    def _try_repersist(self, *, force: bool = False) -> None:
        """Write the memory buffer back to SQLite once it works again."""
        now = self._clock()
        if now < self._next_db_retry and not force:
            return
        conn = self._conn
        with self._lock:
            items = list(self._memory.values())
            try:
                with transaction(conn, join=False):  # durable when the block ends
                    conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
                    for it in items:
                        conn.execute(
                            "INSERT OR IGNORE INTO outbox (id, topic, payload, retain, created_at)"
                            " VALUES (?, ?, ?, ?, ?)",
                            (it.id, it.topic, it.payload, int(it.retain), it.created_at),
                        )
                row = conn.execute("SELECT COUNT(*), MIN(created_at) FROM outbox").fetchone()
            except sqlite3.Error as exc:
                self._set_degraded(f"database still failing: {exc}")
                return
            self._memory.clear()
            if self._spill is not None:
                self._spill.clear()  # after the commit: the events are durable in the database
            self._db_count = int(row[0])
            self._oldest = None if row[1] is None else float(row[1])
            self._db_maybe_pending = True
            log.warning(
                "outbox %s: database works again, %d buffered events persisted",
                self.topics.gate,
                len(items),
            )
            self._degraded = None
            if self._memory_dropped:
                ev = EventsDropped(
                    site=self.topics.site,
                    gate=self.topics.gate,
                    count=self._memory_dropped,
                    reason=DropReason.MEMORY,
                    oldest_ts=_utc(self._memory_dropped_first),
                    newest_ts=_utc(self._memory_dropped_last),
                )
                self._memory_dropped = 0
                self._memory_dropped_first = self._memory_dropped_last = None
                self.put(ev)

    async def persist_loop(self) -> None:
        """Retry persisting the memory buffer every ``retry_db_s``, with or without a broker.

        :meth:`drain` runs only while connected and :meth:`put` only when an event comes:
        without this loop, events buffered while the database was locked stayed only in
        memory until one of them happened (then a kill -9 lost them).
        """
        while True:
            await asyncio.sleep(self.retry_db_s)
            if not self._memory and self._degraded is None:
                continue
            # off the event loop: the write (and the lock a put holds while SQLite waits
            # ~10 s on a locked WAL index) must never stall readers and doors
            if await asyncio.to_thread(self._repersist_now):
                self._notify()

    def _repersist_now(self) -> bool:
        """One forced write-back of the memory buffer; True when it is empty afterwards."""
        with self._lock:
            if not self._memory and self._degraded is None:
                return False
            self._try_repersist(force=True)
            return not self._memory

    def _recover_spill(self, spill: SpillJournal) -> None:
        """At start: put the events journalled by an earlier run back into the database."""
        recs = spill.load()
        if not recs:
            spill.clear()
            return
        log.warning(
            "outbox %s: %d events recovered from the spill journal", self.topics.gate, len(recs)
        )
        for rec in recs:  # in order, behind the database rows; the journal keeps them
            self._put_memory(OutboxItem(None, *rec), journal=False)
        self._try_repersist(force=True)

    # ------------------------------------------------------------------ delivering

    def _next_batch(self) -> list[OutboxItem]:
        with self._lock:
            if self._db_maybe_pending:
                try:
                    rows = self._conn.execute(
                        "SELECT seq, id, topic, payload, retain, created_at FROM outbox"
                        " ORDER BY seq LIMIT ?",
                        (self.batch + len(self._acked_undeleted),),
                    ).fetchall()
                except sqlite3.Error as exc:
                    self._set_degraded(f"cannot read outbox: {exc}")
                    return []  # older rows may exist: memory must wait behind them
                items = [
                    OutboxItem(
                        int(r[0]), str(r[1]), str(r[2]), bytes(r[3]), bool(r[4]), float(r[5])
                    )
                    for r in rows
                    if int(r[0]) not in self._acked_undeleted
                ][: self.batch]
                if items:
                    return items
                if not rows:
                    self._db_maybe_pending = False
                if self._acked_undeleted:
                    return []
            return [it for _, it in zip(range(self.batch), self._memory.values(), strict=False)]

    def _mark_sent(self, batch: list[OutboxItem]) -> None:
        db_seqs = [it.seq for it in batch if it.seq is not None]
        with self._lock:
            self._published_total += len(batch)
            if any(it.seq is None for it in batch):
                sent_ids = {id(it) for it in batch if it.seq is None}
                for key in [k for k, v in self._memory.items() if id(v) in sent_ids]:
                    del self._memory[key]
                if not self._memory and self._spill is not None:
                    self._spill.clear()  # all delivered (the broker acknowledged them)
            if not db_seqs and not self._acked_undeleted:
                return
            todo = sorted(self._acked_undeleted.union(db_seqs))
            try:
                # a delete lost to a power cut only re-sends (same id): no fsync for it; the
                # next FULL commit syncs the WAL up to and including it
                self._set_sync("NORMAL")
                for i in range(0, len(todo), 500):
                    chunk = todo[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    cur = self._conn.execute(
                        f"DELETE FROM outbox WHERE seq IN ({marks})",  # noqa: S608 - placeholders only
                        chunk,
                    )
                    self._db_count = max(0, self._db_count - max(cur.rowcount, 0))
            except sqlite3.Error as exc:
                # the rows were acknowledged; remember them so they are not sent again
                self._acked_undeleted.update(db_seqs)
                self._set_degraded(f"cannot delete published rows: {exc}")
                return
            finally:
                self._set_sync(self.synchronous)
            self._acked_undeleted.clear()
            if self._db_count == 0:
                self._oldest = None

    async def drain(self, publish: Publish, *, housekeeping_s: float = 5.0) -> None:
        """Publish pending events in order until cancelled; raises what ``publish`` raises.

        At most :attr:`window` publications are awaited concurrently; they are started in
        ``seq`` order, so the broker receives them in order on the one connection.
        """
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        next_housekeeping = 0.0
        # SQLite calls run off the event loop: a database whose WAL index another process
        # holds makes each of them wait ~10 s, which must not stall readers and doors.
        db = asyncio.to_thread
        while True:
            now = self._clock()
            if self._memory or self._degraded is not None:
                await db(self._try_repersist)
            if self._acked_undeleted:
                await db(self._mark_sent, [])
            if now >= next_housekeeping:
                await db(self.expire)
                next_housekeeping = now + housekeeping_s
            self._wake.clear()
            batch = await db(self._next_batch)
            if not batch:
                timeout = self.retry_db_s if self._degraded else housekeeping_s
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                continue
            await self._send(batch, publish)
            await db(self._mark_sent, batch)

    async def _send(self, batch: list[OutboxItem], publish: Publish) -> None:
        sem = asyncio.Semaphore(self.window)
        tasks: list[asyncio.Task[None]] = []

        async def one(item: OutboxItem) -> None:
            try:
                await publish(item.topic, item.payload, item.retain)
            finally:
                sem.release()

        try:
            for item in batch:
                await sem.acquire()
                # tasks start in creation order, so publications hit the socket in seq order
                tasks.append(asyncio.create_task(one(item)))
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # mark what was acknowledged before the failure
            done = [it for it, t in zip(batch, tasks, strict=False) if _acked(t)]
            if done:
                await asyncio.shield(asyncio.to_thread(self._mark_sent, done))
            raise


def _acked(task: asyncio.Task[None]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


def _dropped_weight(topic: str, payload: bytes) -> int:
    """An events_dropped row that is itself dropped carries its count forward."""
    if topic.endswith(_DROPPED_SUFFIX):
        try:
            return max(1, int(json.loads(payload)["count"]))
        except (ValueError, KeyError, TypeError):
            return 1
    return 1


def _utc(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC)


def _record(item: OutboxItem) -> SpillRecord:
    return SpillRecord(item.id, item.topic, item.payload, item.retain, item.created_at)


def _journal_for(conn: sqlite3.Connection, path: Path | None, label: str) -> SpillJournal | None:
    """The spill journal: ``path``, else beside the database file (none in memory)."""
    if path is None:
        try:
            row = conn.execute("PRAGMA database_list").fetchone()
        except sqlite3.Error:
            return None
        path = default_path(str(row[2] or "")) if row is not None else None
    return None if path is None else SpillJournal(path, label)
