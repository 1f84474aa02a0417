"""What the simulated reader promises about the events it accepts.

A card swipe or key presses are acknowledged only when they will reach the control panel:
refused while no control panel polls the reader (a real reader's swipe is then lost, and
the caller must know), refused when too many events already wait, and every event libosdp
later drops (link lost mid-reply, flushed, torn down) is counted and logged, never silent.
Key presses go out in small keypad reports: libosdp's keypad buffer holds 64 bytes and a
longer report corrupts its memory (200 keys in one ``press-keys`` aborted the process).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

KEYS_PER_EVENT = 16
"""Keys per keypad report (libosdp: at most 64)."""
MAX_KEYS = 1000
"""Most keys accepted in one ``press-keys``."""
MAX_PENDING = 64
"""Most events waiting for the control panel's polls."""

_STATUS = {1: "transport failure", 2: "flushed", 3: "aborted at teardown"}


def key_chunks(keys: str) -> list[str]:
    """``keys`` split into keypad reports of at most KEYS_PER_EVENT keys."""
    return [keys[i : i + KEYS_PER_EVENT] for i in range(0, len(keys), KEYS_PER_EVENT)]


class EventTracker:
    """Counts events handed to libosdp until each is delivered or dropped."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.pending = 0
        self.delivered = 0
        self.dropped = 0

    def attach(self, pd: Any) -> None:
        """Follow the completions of ``pd`` (an ``osdp.PeripheralDevice``)."""
        pd.set_event_completion_handler(self._done)

    def reserve(self, count: int, *, online: bool, need_online: bool) -> str | None:
        """Room for ``count`` more events, or why not (nothing is reserved then)."""
        if need_online and not online:
            return "offline (no control panel is polling it): not delivered"
        with self._lock:
            if self.pending + count > MAX_PENDING:
                return (
                    f"{self.pending} events still wait for the control panel "
                    f"(at most {MAX_PENDING}): not delivered"
                )
            self.pending += count
        return None

    def release(self, count: int = 1) -> None:
        """Give back reservations libosdp refused."""
        with self._lock:
            self.pending = max(0, self.pending - count)

    def _done(self, event: dict[str, Any], status: int) -> None:
        with self._lock:
            self.pending = max(0, self.pending - 1)
            if status == 0:
                self.delivered += 1
                return
            self.dropped += 1
        log.warning(
            "reader %s: an accepted event was dropped by libosdp (%s)",
            self.name,
            _STATUS.get(status, f"status {status}"),
        )
