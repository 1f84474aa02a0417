"""Database reads on the access decision path, with a deadline and a memory fallback.

A card or PIN decision reads the credential store and the person's facts. When the database
is slow, locked from outside or failing, each read would wait for SQLite's busy timeout on
the single database thread (seconds per decision). Here every such read gets ``deadline_s``;
past it the credential store is marked down (lookups answer from the in-memory cache for
``Credentials.db_retry_s``, then one read tries the store again) and the read is repeated
from memory. The fail-closed rule of :class:`~gateway.services.cache_state.CacheState`
decides who may still be granted from memory.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.access import PersonFacts, Role

if TYPE_CHECKING:
    from gateway.credentials.store import Credentials
    from gateway.services.cache_state import CacheState

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Longest a decision waits for one database read before answering from memory.
DECISION_DB_DEADLINE_S = 0.15
#: Longest a decision waits for its bookkeeping writes (access log) before moving on.
BOOKKEEPING_DEADLINE_S = 0.1
#: Most bookkeeping writes waiting for a hanging store; more are skipped (and counted).
MAX_BACKGROUND = 256


class DecisionReads:
    """Deadline-bounded reads for the controller; memory answers past the deadline."""

    def __init__(
        self,
        credentials: Credentials,
        run_decide: Callable[..., Awaitable[Any]],
        *,
        run_db: Callable[..., Awaitable[Any]] | None = None,
        cache: CacheState | None = None,
        deadline_s: float = DECISION_DB_DEADLINE_S,
        gate: str = "-",
    ) -> None:
        self.credentials = credentials
        self.run_decide = run_decide  # where the credential store's connection is used
        self.run_db = run_db or run_decide  # the bookkeeping writes (access log)
        self.cache = cache
        self.deadline_s = deadline_s
        self.gate = gate
        self.timeouts = 0
        self.skipped = 0
        self._background: set[asyncio.Future[Any]] = set()
        # Memory answers get threads of their own: a store that hangs (a locked WAL index
        # makes each read wait ~10 s) must not queue them behind stuck database calls.
        self._memory_pool = ThreadPoolExecutor(2, thread_name_prefix="decide-memory")

    async def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the database thread within the deadline; else mark the
        store down and run it again off the event loop, where it answers from memory."""
        if self.credentials.store_down and not self.credentials.may_try_store():
            return await self._memory(fn, *args, **kwargs)
        try:
            async with asyncio.timeout(self.deadline_s):
                result: T = await self.run_decide(fn, *args, **kwargs)
                return result
        except TimeoutError:
            self.timeouts += 1
            self.credentials.mark_store_down(f"{what} took over {self.deadline_s * 1000:.0f} ms")
            return await self._memory(fn, *args, **kwargs)

    async def _memory(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._from_memory, fn, *args, **kwargs)
        return await loop.run_in_executor(self._memory_pool, call)

    def _from_memory(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.credentials.memory_only():
            return fn(*args, **kwargs)

    async def bookkeeping(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a write after the decision (access log): waited for ``BOOKKEEPING_DEADLINE_S``,
        then left to finish in the background so that the next decision is not held."""
        if len(self._background) >= MAX_BACKGROUND:
            self.skipped += 1  # the store hangs: do not queue without bound
            if self.skipped == 1:
                log.error("gate %s: the store hangs; access log rows are skipped", self.gate)
            return
        fut = asyncio.ensure_future(self.run_db(fn, *args))
        self._background.add(fut)
        fut.add_done_callback(self._done)
        if self.credentials.store_down:
            return  # known to be slow: never make the next decision wait for it
        try:
            async with asyncio.timeout(BOOKKEEPING_DEADLINE_S):
                await asyncio.shield(fut)
        except TimeoutError:
            log.debug("gate %s: decision bookkeeping continues in the background", self.gate)

    def _done(self, fut: asyncio.Future[Any]) -> None:
        self._background.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.error("gate %s: decision bookkeeping failed: %s", self.gate, fut.exception())

    def facts_from_cache(self, person_id: str, now: float) -> PersonFacts | None:
        """A person's facts from memory (no face consent: the face path needs the store)."""
        if self.cache is None:
            return None
        rec = self.cache.person(person_id)
        if rec is None:
            return None
        return PersonFacts(
            person_id=person_id,
            role=Role(rec.role),
            access_group=rec.access_group,
            valid_from=rec.valid_from,
            valid_until=rec.valid_until,
            face_consent=False,
            locked_out=self.credentials.locked_for("person", person_id, now) > 0,
        )

    def refuse_from_memory(self, person_id: str | None, door: str) -> bool:
        """True when ``person_id`` must be refused because the answer came from memory and
        the cache cannot vouch for them (fail closed; logged without the identity)."""
        if person_id is None or not self.credentials.store_down:
            return False
        reason = "no cache state" if self.cache is None else self.cache.refuse_reason(person_id)
        if reason is None:
            return False
        log.warning(
            "door %s: credential refused from memory (%s; the store cannot be read)", door, reason
        )
        return True
