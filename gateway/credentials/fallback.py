"""The database under the credential store, with the in-memory fallback in front of it.

:class:`FallbackStore` runs every lookup through :meth:`FallbackStore._db`: when SQLite fails
(``sqlite3.Error``: locked, disk full, I/O error) the store is marked down, lookups are
answered from the :class:`~gateway.credentials.cache.CredentialCache`, and the database is
retried every ``db_retry_s``; once it answers again the uses and failure counters taken
meanwhile are written back (:meth:`FallbackStore._flush`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlite_utils

from gateway.credentials.cache import CredentialCache

log = logging.getLogger(__name__)

_T = TypeVar("_T")
Clock = Callable[[], float]


class StoreDown(Exception):  # noqa: N818 - internal control flow, not an error family
    """The database failed (or is being skipped while degraded): use the cache."""


class FallbackStore:
    """A state database with a credential cache answering while it fails."""

    def __init__(self, db: sqlite_utils.Database, retry_s: float, clock: Clock) -> None:
        """Retry a failed database after ``retry_s`` seconds of ``clock``."""
        self.db, self.db_retry_s, self._clock = db, retry_s, clock
        self._local = threading.local()  # per thread: inside memory_only()
        self._cache = CredentialCache()
        # why decisions come from memory, and when to try the database again
        self._degraded: str | None = None
        self._retry_at = 0.0

    # -- degradation -------------------------------------------------------------------

    @property
    def degraded(self) -> str | None:
        """Why decisions come from memory (None when the store works and nothing waits)."""
        if self._degraded is not None:
            return self._degraded
        waiting = self._cache.waiting()
        if waiting:
            return f"{waiting} credential update(s) not yet written to the store"
        return None

    @property
    def store_down(self) -> bool:
        """True while lookups are answered from memory (the store failed or timed out)."""
        return self._degraded is not None

    def mark_store_down(self, reason: str) -> None:
        """Answer from memory for the next ``db_retry_s`` (a lookup missed its deadline)."""
        self._retry_at = self._clock() + self.db_retry_s
        if self._degraded is None:
            log.error("credential store too slow (%s); deciding from the in-memory cache", reason)
        self._degraded = f"credential store unavailable ({reason})"

    def forget_cards(self, person_id: str, card_hmac: bytes | None = None) -> None:
        """Drop a person's card (or all their cards) from the cache, before a revocation is
        written: a revocation that reached this process is refused even if the write fails."""
        self._cache.forget_cards(person_id, card_hmac)

    def forget_pins(self, person_id: str, kind: str | None = None) -> None:
        """Drop a person's PINs (of one kind, or all) from the cache (see forget_cards)."""
        self._cache.drop_person(person_id, kind)

    def _db(self, what: str, where: str, fn: Callable[[], _T], *, force: bool = False) -> _T:
        """Run ``fn`` against the database; raise StoreDown when it fails or while the
        store is being skipped (degraded, retried every ``db_retry_s``)."""
        if not force and not self._may_try_db():
            raise StoreDown
        try:
            result = fn()
        except sqlite3.Error as exc:
            self._retry_at = self._clock() + self.db_retry_s
            if self._degraded is None:
                log.error(
                    "reader %s: credential store failed during %s (%s: %s); deciding from "
                    "the in-memory credential cache",
                    where,
                    what,
                    type(exc).__name__,
                    exc,
                )
            self._degraded = f"credential store unavailable ({type(exc).__name__}: {exc})"
            raise StoreDown from exc
        if self._degraded is not None and self._flush():
            self._degraded = None
            log.warning("reader %s: credential store works again", where)
        return result

    def may_try_store(self) -> bool:
        """False while the store is being skipped after a failure (retried every db_retry_s)
        and inside :meth:`memory_only`."""
        return self._may_try_db()

    @contextmanager
    def memory_only(self) -> Iterator[None]:
        """Answer from the cache only, on this thread (a lookup that missed its deadline is
        repeated so, while the database thread may still be using the connection)."""
        self._local.offline = True
        try:
            yield
        finally:
            self._local.offline = False

    def _may_try_db(self) -> bool:
        if getattr(self._local, "offline", False):
            return False
        return self._degraded is None or self._clock() >= self._retry_at

    def _flush(self) -> bool:
        """Write back visitor-PIN uses and failure counters kept in memory (best effort)."""
        uses, locks = self._cache.pending()
        try:
            for pin_id, n in uses.items():
                self.db.execute(
                    "UPDATE pins SET uses_left = max(uses_left - ?, 0) "
                    "WHERE id = ? AND uses_left IS NOT NULL",
                    [n, pin_id],
                )
                self._cache.uses_written(pin_id, n)
            for (scope, subject), (failures, until) in locks.items():
                self.db.execute(
                    "INSERT INTO lockouts (scope, subject, failures, locked_until) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (scope, subject) DO UPDATE SET "
                    "failures = max(failures, excluded.failures), "
                    "locked_until = max(locked_until, excluded.locked_until)",
                    [scope, subject, failures, until],
                )
                self._cache.lockout_written((scope, subject), (failures, until))
        except sqlite3.Error as exc:
            self._retry_at = self._clock() + self.db_retry_s
            log.debug("credential updates not written back yet: %s", exc)
            return False
        return True

    @property
    def epoch(self) -> int:
        """Changes with every credential taken out of the cache (take it before reading
        rows for :meth:`install`)."""
        return self._cache.epoch

    def install(self, cards: list[Any], pins: list[Any], mark: tuple[Any, ...], epoch: int) -> bool:
        """Replace the cache with rows read on another connection in one snapshot
        (:data:`CACHE_CARDS_SQL`, :data:`CACHE_PINS_SQL`, :data:`FINGERPRINT_SQL`). False,
        and nothing replaced, when a credential left the cache since ``epoch`` was taken:
        the rows may predate that revocation."""
        return self._cache.install(cards, pins, mark, epoch)

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """All-or-nothing group of writes (a savepoint: nests in a caller's transaction)."""
        self.db.execute("SAVEPOINT credentials")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK TO credentials")
            self.db.execute("RELEASE credentials")
            raise
        self.db.execute("RELEASE credentials")
