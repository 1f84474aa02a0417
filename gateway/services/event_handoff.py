"""Queue events without blocking the event loop while the storage misbehaves.

The outbox writes each event to SQLite on the caller's thread. When another process holds
the database's WAL index, each such write waits ~10 s inside SQLite (whatever the busy
timeout) -- on the event loop, that would stall every reader and door. While the storage is
suspect (credential lookups failing or timing out, the outbox buffering in memory, read-only
storage) events go to one worker thread instead, in order; they keep going there until it
has caught up, so that no event overtakes an earlier one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)


class EventHandoff:
    """``put(event)`` directly, or on the events thread while ``suspect()`` holds."""

    def __init__(self, put: Callable[[Any], None], suspect: Callable[[], bool]) -> None:
        self._put = put
        self._suspect = suspect
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="events")
        self._lock = threading.Lock()
        self._pending = 0
        #: every event through the thread (the daemon): the first write after the storage
        #: starts to hang must not stall the loop either
        self.always = False

    @property
    def pending(self) -> int:
        """Events handed to the thread and not yet queued in the outbox."""
        with self._lock:
            return self._pending

    def __call__(self, event: Any) -> None:
        with self._lock:
            deferred = self.always or self._pending > 0 or self._suspect()
            if deferred:
                self._pending += 1
        if not deferred:
            self._put(event)
            return
        self._pool.submit(self._run, event)

    def _run(self, event: Any) -> None:
        try:
            self._put(event)
        except Exception:
            log.exception("event %s could not be queued", getattr(event, "type", "?"))
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        """Let queued events reach the outbox (bounded by the outbox's own waits)."""
        self._pool.shutdown(wait=False)
