"""Keep the daemon's in-memory credential cache in step with the database, whoever writes it.

``PRAGMA data_version`` on a connection of its own changes whenever *another* connection
commits (the CLI, the office tools, this daemon's other connections); it is read every
``interval_s`` (a read of the WAL index, no table access). When it moved, the credential
cache (cards, PINs) and the people facts are reloaded on the database thread. Changes made
in this process through :mod:`gateway.services.credentials` reach the cache at once.

What is known about currency goes to :class:`~gateway.services.cache_state.CacheState`:
proven current at each check, or a change seen but not loaded (then card and PIN are
refused from memory until the reload succeeds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.services.cache_state import CacheState

if TYPE_CHECKING:
    from gateway.credentials import Credentials

log = logging.getLogger(__name__)

RunDb = Callable[..., Awaitable[Any]]


class CacheFollower:
    """Poll the data version; reload the caches when it moves."""

    def __init__(
        self,
        db_path: Path | str,
        credentials: Credentials,
        state: CacheState,
        run_db: RunDb,
        *,
        interval_s: float = 0.25,
        deadline_s: float = 1.0,
        name: str = "-",
    ) -> None:
        self.db_path = str(db_path)
        self.credentials = credentials
        self.state = state
        self.run_db = run_db
        self.interval_s = interval_s
        self.deadline_s = deadline_s
        self.name = name
        self._conn: sqlite3.Connection | None = None
        self._seen: int | None = None
        self.reloads = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cache-follower")
        self._probe: asyncio.Future[int] | None = None

    def _version(self) -> int:
        if self._conn is None:
            uri = f"file:{Path(self.db_path).resolve()}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, timeout=0.05, check_same_thread=False)
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _reload(self) -> None:
        """On the database thread: both caches from the store (sqlite3.Error propagates)."""
        self.credentials.refresh_if_changed()  # a cheap aggregate first; reloads on a change
        if self.credentials.store_down:
            raise sqlite3.OperationalError(self.credentials.degraded or "credential reload failed")
        self.state.load(self.credentials.db)

    async def check(self) -> bool:
        """One poll; True when the caches were reloaded."""
        if self._probe is not None and not self._probe.done():
            return False  # the previous read still hangs (a locked WAL index): skip
        loop = asyncio.get_running_loop()
        self._probe = loop.run_in_executor(self._pool, self._version)
        self._probe.add_done_callback(_retrieve)
        try:
            version = await asyncio.wait_for(asyncio.shield(self._probe), self.deadline_s)
        except (sqlite3.Error, TimeoutError) as exc:
            if isinstance(exc, sqlite3.Error):
                await loop.run_in_executor(self._pool, self._close)
            if self._seen is not None:
                log.debug("gate %s: data version unreadable: %s", self.name, exc)
            return False
        if version == self._seen and self.state.unknown_change is None:
            self.state.note_proven()
            return False
        try:
            await asyncio.wait_for(self.run_db(self._reload), self.deadline_s * 5)
        except (sqlite3.Error, TimeoutError) as exc:
            if self._seen is not None:
                self.state.note_unknown_change(f"{type(exc).__name__}: {exc}")
            return False
        if self.state.unknown_change is None and self._seen is not None:
            log.debug("gate %s: credential cache reloaded", self.name)
        self._seen = version
        self.reloads += 1
        return True

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    async def run(self) -> None:
        """Service body: poll until cancelled."""
        try:
            while True:
                await self.check()
                await asyncio.sleep(self.interval_s)
        finally:
            self._pool.submit(self._close)


def _retrieve(fut: asyncio.Future[int]) -> None:
    """Consume the outcome of a probe nobody waits for any more (it outlived its deadline)."""
    if not fut.cancelled():
        fut.exception()
