"""Door physics: a leaf, a lock driven by the reader's relay (output 0) and a contact (input 0).

Rules: the door opens only when the lock is released (relay on) and someone pushes, or when
it is forced (opened while locked). An open door closes by itself ``pass_s`` seconds after
the push unless it is held; it stays open, whatever the relay does, until then. Pure apart
from the ``on_contact`` callback; the clock is injected (``now`` arguments).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DoorResult:
    """What one physical action did."""

    opened: bool
    reason: str


class Door:
    """One door; thread-safe. ``on_contact(open)`` fires on every contact change."""

    def __init__(
        self,
        name: str,
        *,
        pass_s: float = 2.0,
        on_contact: Callable[[bool], None] | None = None,
    ) -> None:
        self.name = name
        self.pass_s = pass_s
        self._on_contact = on_contact
        self._lock = threading.Lock()
        self.unlocked = False
        self.is_open = False
        self.forced = False
        self._close_at: float | None = None  # None while open = held

    def set_relay(self, on: bool) -> None:
        """Relay output 0 changed (on = lock released)."""
        with self._lock:
            self.unlocked = on
        log.debug("door %s: lock %s", self.name, "released" if on else "engaged")

    def push(self, now: float) -> DoorResult:
        """Someone pushes the door: it opens only if unlocked (or already open)."""
        with self._lock:
            if self.is_open:
                self._close_at = now + self.pass_s if self._close_at is not None else None
                return DoorResult(opened=True, reason="already_open")
            if not self.unlocked:
                return DoorResult(opened=False, reason="locked")
            self.forced = False
            self._close_at = now + self.pass_s
        self._contact(True)
        return DoorResult(opened=True, reason="unlocked")

    def hold(self, now: float, seconds: float | None = None) -> DoorResult:
        """Push and keep the door open (``seconds`` then it closes; None = until ``close``)."""
        with self._lock:
            if not self.is_open and not self.unlocked:
                return DoorResult(opened=False, reason="locked")
            was_open = self.is_open
            self._close_at = None if seconds is None else now + seconds
        if not was_open:
            self._contact(True)
        return DoorResult(opened=True, reason="held")

    def force(self, now: float, seconds: float | None = None) -> DoorResult:
        """Open the door whatever the lock says (a forced door if it was locked)."""
        with self._lock:
            was_open = self.is_open
            self.forced = not self.unlocked
            self._close_at = now + (self.pass_s if seconds is None else seconds)
        if not was_open:
            self._contact(True)
        return DoorResult(opened=True, reason="forced" if self.forced else "unlocked")

    def close(self) -> None:
        """Let the door shut now."""
        with self._lock:
            was_open = self.is_open
            self._close_at = None
            self.forced = False
        if was_open:
            self._contact(False)

    def tick(self, now: float) -> None:
        """Advance time: close the door when its pass time is over."""
        with self._lock:
            due = self.is_open and self._close_at is not None and now >= self._close_at
        if due:
            self.close()

    def _contact(self, is_open: bool) -> None:
        with self._lock:
            self.is_open = is_open
        log.info("door %s: %s", self.name, "open" if is_open else "closed")
        if self._on_contact is not None:
            self._on_contact(is_open)

    def state(self) -> dict[str, object]:
        """JSON-ready state."""
        with self._lock:
            return {
                "open": self.is_open,
                "unlocked": self.unlocked,
                "forced": self.forced and self.is_open,
                "held": self.is_open and self._close_at is None,
            }
