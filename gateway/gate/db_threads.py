"""The gate's database threads: one shared by housekeeping, privacy and the events, and
one for the credential store's own connection, so that decisions never queue behind
housekeeping."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.store.readonly import open_extra

log = logging.getLogger(__name__)
T = TypeVar("T")


class DbThreads:
    """The two database threads, and the credential store's connection (short lock wait)."""

    def __init__(self, database_path: Path, *, read_only: bool) -> None:
        self.shared = ThreadPoolExecutor(1, thread_name_prefix="db")
        self.decide = ThreadPoolExecutor(1, thread_name_prefix="decide-db")
        self.decide_db = open_extra(database_path, busy_timeout_ms=250, read_only=read_only)

    async def run_db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a database call on the single database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.shared, functools.partial(fn, *args, **kwargs))

    async def run_decide(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a call on the credential store's own thread and connection (decisions, the
        credential services, the cache follower)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.decide, functools.partial(fn, *args, **kwargs))

    async def close(self, gate: str) -> None:
        """Stop both threads, then close the credential store's connection."""
        # Let a running statement finish before the connection is closed under it (a
        # statement can be stuck in SQLite's busy wait while the store is locked).
        for pool in (self.shared, self.decide):
            done = asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
            try:
                async with asyncio.timeout(3.0):
                    await done
            except TimeoutError:
                log.warning("gate %s: a database call still runs at close", gate)
                return  # never close a connection under a running statement
        self.decide_db.close()
