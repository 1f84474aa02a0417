"""PIN entry from key presses (pure, clock injected).

Keys come from OSDP keypad events or Wiegand 4/8-bit bursts (both arrive as
:class:`~gateway.hardware.events.KeyPress`). ``#`` submits, ``*`` clears, a pause longer
than ``inter_digit_s`` drops the partial entry, and entry stops growing at ``max_len``.
The buffer is a secret: it is never logged and its ``repr`` hides the digits.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PinEntered:
    """A submitted PIN (secret: hash/verify it at once)."""

    reader: str
    pin: str = field(repr=False)


@dataclass(frozen=True)
class EntryCleared:
    """The partial entry was dropped: ``reason`` is ``cleared``, ``timeout`` or ``too_short``."""

    reader: str
    reason: str


KeypadOutput = PinEntered | EntryCleared


@dataclass
class KeypadBuffer:
    """Collect digits for one reader."""

    reader: str
    inter_digit_s: float = 5.0
    min_len: int = 4
    max_len: int = 8
    _digits: list[str] = field(default_factory=list, repr=False)
    _last: float | None = field(default=None, repr=False)

    @property
    def length(self) -> int:
        """Digits typed so far (for a '****' display)."""
        return len(self._digits)

    def key(self, key: str, now: float) -> KeypadOutput | None:
        """Feed one key; return a PinEntered on ``#``, an EntryCleared on ``*``/timeout."""
        timed_out = self.tick(now)
        if key == "*":
            had = bool(self._digits)
            self._reset()
            return EntryCleared(self.reader, "cleared") if had else timed_out
        if key == "#":
            if not self._digits:
                return timed_out
            if len(self._digits) < self.min_len:
                self._reset()
                return EntryCleared(self.reader, "too_short")
            pin = "".join(self._digits)
            self._reset()
            return PinEntered(self.reader, pin)
        if len(key) == 1 and key.isdigit():
            if len(self._digits) < self.max_len:
                self._digits.append(key)
            self._last = now
        return timed_out

    def tick(self, now: float) -> EntryCleared | None:
        """Drop a stale partial entry."""
        if self._digits and self._last is not None and now - self._last >= self.inter_digit_s:
            self._reset()
            return EntryCleared(self.reader, "timeout")
        return None

    def _reset(self) -> None:
        self._digits.clear()
        self._last = None
