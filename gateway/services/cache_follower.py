"""Keep the daemon's in-memory credential cache in step with the database, whoever writes it.

The follower has a read-only connection and a thread of its own (never the decision
store's connection, whose "down" flag only says that *decisions* answer from memory):

- every ``interval_s`` it reads ``PRAGMA data_version`` (a read of the WAL index, no table
  access), which moves whenever another connection commits -- the CLI, the office tools,
  but also this daemon's own outbox, access log and audit writes. The version is only
  compared on the connection that read it: after a reopen (any sqlite3.Error closes it)
  the generation is read and compared with the one last loaded;
- when it moved, it reads the credential generation (:data:`GENERATION_SQL`, bumped by
  triggers on every change to a card, a PIN or a person's role, group or validity; store
  migration 4). Unchanged: the daemon's own bookkeeping wrote, the cache is proven current.
  Changed: cards, PINs and people facts are reloaded in one read snapshot on the same
  connection. Reads that work while writes fail (a write lock, a full disk) keep the cache
  current.

What is known about currency goes to :class:`~gateway.services.cache_state.CacheState`:
proven current at each check; a credential change seen but not loaded makes everyone's card
and PIN refused from memory until the reload succeeds; a database that cannot be read at
all leaves the cache unproven (only recently changed or unknown credentials are refused).
Changes made in this process through :mod:`gateway.services.credentials` reach the cache
at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.credentials.store import CACHE_CARDS_SQL, CACHE_PINS_SQL, FINGERPRINT_SQL
from gateway.services.cache_state import CacheState
from gateway.store.tx import snapshot

if TYPE_CHECKING:
    from gateway.credentials.store import Credentials

log = logging.getLogger(__name__)

GENERATION_SQL = "SELECT gen FROM credential_generation WHERE id = 1"


@dataclass(frozen=True, slots=True)
class Probe:
    """One look at the database: its data version and credential generation (None when
    the version did not move, or the schema has no generation: then any change counts)."""

    version: int
    generation: int | None
    moved: bool


class CacheFollower:
    """Poll the data version; reload the caches when the credentials changed."""

    def __init__(
        self,
        db_path: Path | str,
        credentials: Credentials,
        state: CacheState,
        *,
        interval_s: float = 0.25,
        deadline_s: float = 1.0,
        busy_timeout_s: float = 0.05,
        name: str = "-",
    ) -> None:
        self.db_path = str(db_path)
        self.credentials = credentials
        self.state = state
        self.interval_s = interval_s
        self.deadline_s = deadline_s
        self.busy_timeout_s = busy_timeout_s
        self.name = name
        self._conn: sqlite3.Connection | None = None
        self._seen: int | None = None  # data version of the last check that proved currency
        self._generation: int | None = None  # credential generation of the loaded snapshot
        self._loaded = False  # a snapshot was loaded on this connection
        self.reloads = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cache-follower")
        self._pending: asyncio.Future[Any] | None = None

    # -- on the follower's thread ----------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # a fresh connection's data_version starts again at its initial value, which
            # may equal the one last seen: the first probe compares the generation
            self._seen = None
            uri = f"file:{Path(self.db_path).resolve()}?mode=ro"
            self._conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=self.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        return self._conn

    def _probe(self) -> Probe:
        conn = self._connection()
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if version == self._seen:
            return Probe(version, self._generation, moved=False)
        return Probe(version, _generation(conn), moved=True)

    def load(self) -> None:
        """Reload cards, PINs and people facts in one read snapshot on the follower's own
        connection (sqlite3.Error propagates; nothing is replaced then)."""
        conn = self._connection()
        epoch = self.credentials.epoch  # before reading: a revocation after it wins
        with snapshot(conn):
            generation = _generation(conn)
            mark = tuple(conn.execute(FINGERPRINT_SQL).fetchone())
            cards = conn.execute(CACHE_CARDS_SQL).fetchall()
            pins = conn.execute(CACHE_PINS_SQL).fetchall()
            people, changes = CacheState.read(conn)
        if not self.credentials.install(cards, pins, mark, epoch):
            raise _Superseded
        self.state.install(people, changes)
        self._generation = generation
        self._loaded = True

    def _close(self) -> None:
        self._seen = None  # a version of that connection means nothing to the next one
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    # -- on the event loop -----------------------------------------------------------------
    async def _run(self, fn: Any, deadline_s: float) -> Any:
        """``fn()`` on the follower's thread within ``deadline_s``; a call still hanging
        (a locked WAL index holds one ~10 s) is not waited for, and no new one is queued."""
        if self._pending is not None and not self._pending.done():
            raise TimeoutError("the previous database read still hangs")
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._pool, fn)
        fut.add_done_callback(_retrieve)
        self._pending = fut
        try:
            async with asyncio.timeout(deadline_s):
                return await asyncio.shield(fut)
        except sqlite3.Error:
            await loop.run_in_executor(self._pool, self._close)
            raise

    async def check(self) -> bool:
        """One poll; True when the caches were reloaded."""
        try:
            probe: Probe = await self._run(self._probe, self.deadline_s)
        except (sqlite3.Error, TimeoutError) as exc:
            # unreadable: the cache cannot be proven current (recent changes are refused)
            log.debug("gate %s: data version unreadable: %s", self.name, exc)
            return False
        same = probe.generation is not None and probe.generation == self._generation
        if self._loaded and self.state.unknown_change is None and (not probe.moved or same):
            self._seen = probe.version  # the daemon's own writes, or nothing, changed
            self.state.note_proven()
            return False
        try:
            await self._run(self.load, self.deadline_s * 5)
        except _Superseded:
            return False  # a revocation in this process raced the read: again next poll
        except (sqlite3.Error, TimeoutError) as exc:
            if self._loaded:
                # a credential change known to have happened (on a schema without the
                # generation, possible): it cannot be loaded, so nobody is vouched for
                self.state.note_unknown_change(f"{type(exc).__name__}: {exc}")
            return False
        if self.reloads:
            log.debug("gate %s: credential cache reloaded", self.name)
        self._seen = probe.version
        self.reloads += 1
        return True

    async def run(self) -> None:
        """Service body: poll until cancelled."""
        try:
            while True:
                await self.check()
                await asyncio.sleep(self.interval_s)
        finally:
            self._pool.submit(self._close)


class _Superseded(Exception):  # noqa: N818 - internal control flow
    """The snapshot read may predate a revocation made in this process meanwhile."""


def _generation(conn: sqlite3.Connection) -> int | None:
    """The credential generation (None on a database without it: read-only, not migrated)."""
    try:
        row = conn.execute(GENERATION_SQL).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return None
    return None if row is None else int(row[0])


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Consume the outcome of a call nobody waits for any more (it outlived its deadline)."""
    if not fut.cancelled():
        fut.exception()
