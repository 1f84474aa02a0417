"""Door state machine (pure, clock injected).

States: ``locked`` -> (grant / exit request) ``unlocked`` for ``unlock_s`` -> (contact
opens) ``open`` -> (contact closes) ``locked`` again ("relocked"). Alarms: ``held_open``
when the door stays open longer than ``held_open_s``; ``forced_open`` when it opens while
locked without an exit request. Every transition returns a :class:`DoorEvent`; relay
changes come back as :class:`LockCommand` for the caller to execute (``release=True``
means "let people through"; :mod:`gateway.hardware.io` maps it to a relay level).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class DoorState(StrEnum):
    """Where the door is."""

    LOCKED = "locked"
    UNLOCKED = "unlocked"
    OPEN = "open"
    HELD_OPEN = "held_open"
    FORCED_OPEN = "forced_open"


@dataclass(frozen=True)
class DoorEvent:
    """A transition. ``kind``: unlocked, opened, closed, relocked, held_open,
    held_open_cleared, forced_open, forced_open_cleared, exit_request."""

    door: str
    kind: str
    ts: float
    alarm: bool = False
    reason: str = ""


@dataclass(frozen=True)
class LockCommand:
    """Release (True) or secure (False) the door's lock."""

    door: str
    release: bool


@dataclass(frozen=True)
class Step:
    """What one input or tick produced."""

    events: tuple[DoorEvent, ...] = ()
    commands: tuple[LockCommand, ...] = ()


@dataclass(frozen=True)
class DoorConfig:
    """Timings for one door."""

    name: str
    unlock_s: float = 5.0
    held_open_s: float = 30.0
    exit_unlock_s: float | None = None  # default: unlock_s


@dataclass
class DoorStateMachine:
    """Pure door logic: feed inputs with timestamps, execute the returned commands."""

    config: DoorConfig
    state: DoorState = DoorState.LOCKED
    _unlock_until: float | None = field(default=None, repr=False)
    _open_since: float | None = field(default=None, repr=False)
    _released: bool = field(default=False, repr=False)

    @property
    def released(self) -> bool:
        """True while the lock is commanded released."""
        return self._released

    @property
    def unlock_until(self) -> float | None:
        """End of the current unlock window (clock time), if any."""
        return self._unlock_until

    def _ev(self, kind: str, now: float, *, alarm: bool = False, reason: str = "") -> DoorEvent:
        return DoorEvent(self.config.name, kind, now, alarm, reason)

    def _lock(self, release: bool) -> tuple[LockCommand, ...]:
        if self._released == release:
            return ()
        self._released = release
        return (LockCommand(self.config.name, release),)

    def grant(self, now: float, *, reason: str = "granted", seconds: float | None = None) -> Step:
        """Access granted: release the lock for ``seconds`` (default ``unlock_s``; extends a
        running window)."""
        return self._unlock(now, self.config.unlock_s if seconds is None else seconds, reason)

    def exit_request(self, now: float) -> Step:
        """Exit button pressed: unlock (the opening that follows is not forced)."""
        step = self._unlock(now, self.config.exit_unlock_s or self.config.unlock_s, "exit")
        return Step((self._ev("exit_request", now), *step.events), step.commands)

    def _unlock(self, now: float, seconds: float, reason: str) -> Step:
        if self.state in (DoorState.OPEN, DoorState.HELD_OPEN, DoorState.FORCED_OPEN):
            # already open: keep the lock released until it closes
            self._unlock_until = now + seconds
            return Step((), self._lock(True))
        self._unlock_until = now + seconds
        if self.state is DoorState.UNLOCKED:
            return Step()
        self.state = DoorState.UNLOCKED
        return Step((self._ev("unlocked", now, reason=reason),), self._lock(True))

    def door_opened(self, now: float) -> Step:
        """Door contact became active."""
        if self.state is DoorState.UNLOCKED:
            self.state = DoorState.OPEN
            self._open_since = now
            return Step((self._ev("opened", now),))
        if self.state is DoorState.LOCKED:
            self.state = DoorState.FORCED_OPEN
            self._open_since = now
            return Step((self._ev("forced_open", now, alarm=True),))
        return Step()  # already open: contact bounce after debounce, ignore

    def door_closed(self, now: float) -> Step:
        """Door contact became inactive: relock."""
        if self.state not in (DoorState.OPEN, DoorState.HELD_OPEN, DoorState.FORCED_OPEN):
            return Step()
        events = [self._ev("closed", now)]
        if self.state is DoorState.HELD_OPEN:
            events.append(self._ev("held_open_cleared", now))
        elif self.state is DoorState.FORCED_OPEN:
            events.append(self._ev("forced_open_cleared", now))
        self.state = DoorState.LOCKED
        self._open_since = None
        self._unlock_until = None
        commands = self._lock(False)
        events.append(self._ev("relocked", now, reason="closed"))
        return Step(tuple(events), commands)

    def tick(self, now: float) -> Step:
        """Advance time: relock after the unlock window, raise the held-open alarm."""
        if self.state is DoorState.UNLOCKED and self._unlock_until is not None:
            if now >= self._unlock_until:
                self.state = DoorState.LOCKED
                self._unlock_until = None
                return Step((self._ev("relocked", now, reason="timeout"),), self._lock(False))
            return Step()
        commands: tuple[LockCommand, ...] = ()
        if (
            self.state in (DoorState.OPEN, DoorState.HELD_OPEN)
            and self._released
            and self._unlock_until is not None
            and now >= self._unlock_until
        ):
            # re-arm the strike so it latches when the door shuts
            commands = self._lock(False)
            self._unlock_until = None
        if (
            self.state is DoorState.OPEN
            and self._open_since is not None
            and now - self._open_since >= self.config.held_open_s
        ):
            self.state = DoorState.HELD_OPEN
            return Step((self._ev("held_open", now, alarm=True),), commands)
        return Step((), commands)

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do (for the caller's timer)."""
        times = [t for t in (self._unlock_until,) if t is not None]
        if self.state is DoorState.OPEN and self._open_since is not None:
            times.append(self._open_since + self.config.held_open_s)
        return min(times) if times else None
