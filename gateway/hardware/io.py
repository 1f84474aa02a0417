"""Door I/O: relays and inputs behind small interfaces, lock/wiring level mapping, debounce.

Lock types: a *fail-secure* lock (electric strike) is locked without power; a *fail-safe*
lock (maglock) is open without power. The relay's lock circuit may run through its NO
(normally open) or NC (normally closed) contact. :func:`relay_energized` maps "release
the door" to the relay coil level for every combination; :func:`safe_state` gives the
level for shutdown (fail-secure -> locked; fail-safe -> released only if configured).

Inputs (door contact, exit button, tamper) are NO or NC switches read against a pull-up:
:func:`input_active` maps the raw level to "active" (door open / button pressed).

Relays take a *permanent* level (:meth:`Relay.set`) and a *timed* one
(:meth:`Relay.pulse`): the relay returns to its permanent level by itself when the time is
up. An OSDP reader does that in its own firmware (it relocks even when the controller is
dead); a GPIO relay does it from a timer thread of this process (it relocks when the event
loop stalls, but NOT after a kill -9 or a crash of the whole process: the line keeps its
level; wire such a relay through a hardware timer or watchdog, see the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from gateway.errors import HardwareError
from gateway.hardware.events import InputChanged, ReaderEvent, Tamper

log = logging.getLogger(__name__)


class LockType(StrEnum):
    """How the lock behaves without power."""

    FAIL_SECURE = "fail_secure"
    FAIL_SAFE = "fail_safe"


class Wiring(StrEnum):
    """Which relay/switch contact is used."""

    NO = "NO"
    NC = "NC"


@dataclass(frozen=True)
class LockSpec:
    """One door's lock: type, relay contact, and shutdown behaviour."""

    lock_type: LockType = LockType.FAIL_SECURE
    relay_contact: Wiring = Wiring.NO
    release_on_shutdown: bool = False  # only honoured for fail-safe locks


def relay_energized(spec: LockSpec, release: bool) -> bool:
    """Coil level that puts the lock in the wanted state."""
    lock_powered = release if spec.lock_type is LockType.FAIL_SECURE else not release
    return lock_powered if spec.relay_contact is Wiring.NO else not lock_powered


def safe_state(spec: LockSpec) -> bool:
    """Coil level for shutdown: fail-secure -> locked; fail-safe -> released only if
    ``release_on_shutdown`` (fire-code egress), else locked."""
    release = spec.lock_type is LockType.FAIL_SAFE and spec.release_on_shutdown
    return relay_energized(spec, release)


def input_active(wiring: Wiring, level: bool) -> bool:
    """Raw level (pull-up: True = circuit open) to active. NO switches close (pull the
    line low) when active; NC switches open (line high) when active."""
    return (not level) if wiring is Wiring.NO else level


@dataclass
class Debouncer:
    """Report a level change only after it has been stable for ``stable_s`` (pure)."""

    stable_s: float = 0.05
    state: bool | None = None
    _candidate: bool | None = field(default=None, repr=False)
    _since: float = field(default=0.0, repr=False)

    def feed(self, level: bool, now: float) -> bool | None:
        """Give a raw sample; return the new stable level when it changes."""
        if level != self._candidate:
            self._candidate = level
            self._since = now
        return self.tick(now)

    def tick(self, now: float) -> bool | None:
        """Re-check with no new sample."""
        if (
            self._candidate is not None
            and self._candidate != self.state
            and now - self._since >= self.stable_s
        ):
            self.state = self._candidate
            return self.state
        return None


@runtime_checkable
class Relay(Protocol):
    """A relay coil."""

    name: str

    async def set(self, energized: bool) -> None:
        """Set the permanent level (cancels a running pulse); return once acknowledged."""

    async def pulse(self, energized: bool, seconds: float) -> None:
        """Hold ``energized`` for ``seconds``, then return to the permanent level by itself;
        a new pulse restarts the timer. Return once acknowledged."""


@runtime_checkable
class InputSource(Protocol):
    """Digital inputs of one board/reader, delivered as (debounced, mapped) events."""

    name: str

    def events(self) -> AsyncIterator[ReaderEvent]:
        """Yield InputChanged / Tamper events."""
        ...


# ----------------------------------------------------------------------------- fakes


class FakeRelay:
    """In-memory relay recording every commanded level (tests); pulses end by themselves
    on the running loop. ``fail`` > 0 makes the next commands fail (not acknowledged)."""

    def __init__(self, name: str = "fake-relay") -> None:
        self.name = name
        self.energized = False
        self.permanent = False
        self.history: list[bool] = []
        self.pulses: list[tuple[bool, float]] = []
        self.fail = 0
        self.attempts = 0
        self._gen = 0

    def _check(self) -> None:
        self.attempts += 1
        if self.fail > 0:
            self.fail -= 1
            raise HardwareError(f"relay {self.name}: command not acknowledged (simulated)")

    async def set(self, energized: bool) -> None:
        self._check()
        self._gen += 1
        self.permanent = self.energized = energized
        self.history.append(energized)

    async def pulse(self, energized: bool, seconds: float) -> None:
        self._check()
        self._gen += 1
        gen = self._gen
        self.energized = energized
        self.history.append(energized)
        self.pulses.append((energized, seconds))

        def end() -> None:
            if self._gen == gen:
                self.energized = self.permanent

        asyncio.get_running_loop().call_later(seconds, end)


class FakeInputs:
    """In-memory inputs: ``set(no, level, now)`` with debounce and NO/NC mapping."""

    def __init__(
        self, name: str, wiring: dict[int, Wiring] | None = None, stable_s: float = 0.0
    ) -> None:
        self.name = name
        self.wiring = wiring or {}
        self._deb: dict[int, Debouncer] = {}
        self._stable_s = stable_s
        self._queue: asyncio.Queue[ReaderEvent] = asyncio.Queue()

    def set(self, no: int, level: bool, now: float) -> InputChanged | None:
        """Feed a raw level; queue and return an event when the debounced value changes."""
        deb = self._deb.setdefault(no, Debouncer(self._stable_s))
        stable = deb.feed(level, now)
        if stable is None:
            return None
        ev = InputChanged(self.name, no, input_active(self.wiring.get(no, Wiring.NO), stable))
        self._queue.put_nowait(ev)
        return ev

    async def start(self) -> None:
        """Nothing to start (same interface as :class:`GpioInputs`)."""

    async def events(self) -> AsyncIterator[ReaderEvent]:
        while True:
            yield await self._queue.get()

    async def close(self) -> None:
        """Nothing to release."""


# ----------------------------------------------------------------------------- OSDP


class OsdpRelay:
    """An OSDP reader output used as the door relay (output 0 by default)."""

    def __init__(self, reader: object, output_no: int = 0) -> None:
        from gateway.hardware.osdp_reader import OsdpReader

        if not isinstance(reader, OsdpReader):
            raise HardwareError("OsdpRelay needs an OSDP reader")
        self.reader = reader
        self.output_no = output_no
        self.name = f"{reader.name}/out{output_no}"

    @property
    def epoch(self) -> int:
        """Changes when the reader comes back online (the lock is then re-asserted)."""
        return self.reader.online_epoch

    async def set(self, energized: bool) -> None:
        await self.reader.output(self.output_no, energized)

    async def pulse(self, energized: bool, seconds: float) -> None:
        # the reader's own timer ends it: it relocks even if this process is gone
        await self.reader.output(self.output_no, energized, seconds)


class InputRole(StrEnum):
    """What an input means at a door."""

    CONTACT = "contact"
    EXIT = "exit"
    TAMPER = "tamper"


@dataclass(frozen=True)
class DoorInputMap:
    """Input numbers of one reader/board: default OSDP wiring contact=0, exit=1."""

    contact: int | None = 0
    exit: int | None = 1
    tamper: int | None = None

    def role(self, event: ReaderEvent) -> tuple[InputRole, bool] | None:
        """Classify an InputChanged/Tamper event for this door, or None."""
        if isinstance(event, Tamper):
            return (InputRole.TAMPER, event.active)
        if not isinstance(event, InputChanged):
            return None
        for role, no in (
            (InputRole.CONTACT, self.contact),
            (InputRole.EXIT, self.exit),
            (InputRole.TAMPER, self.tamper),
        ):
            if no is not None and event.input_no == no:
                return (role, event.active)
        return None


# ----------------------------------------------------------------------------- GPIO


def _gpiod() -> object:
    try:
        import gpiod  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise HardwareError(
            "GPIO relays/inputs need the libgpiod v2 Python binding: "
            "pip install 'access-gateway[pi]' (package gpiod>=2.1)"
        ) from exc
    return gpiod


class GpioRelay:
    """A relay on one GPIO output line (libgpiod v2).

    The line is requested at ``rest_level`` (the door's locked level), so that the lock
    never opens while the daemon starts. A pulse is ended by a timer *thread* (it relocks
    even if the event loop stalls); after a kill -9 or a power-cycle of the controller the
    line keeps (kill) or loses (power) its level: see the README on hardware timers.
    """

    def __init__(
        self,
        chip: str,
        line: int,
        name: str | None = None,
        *,
        rest_level: bool = False,
        timer_factory: Callable[[float, Callable[[], None]], threading.Timer] = threading.Timer,
    ) -> None:
        gpiod = _gpiod()
        self.name = name or f"{chip}:{line}"
        self.line = line
        self._permanent = rest_level
        self._timer_factory = timer_factory
        self._timer: threading.Timer | None = None
        self._gen = 0
        self._wlock = threading.Lock()
        rest = gpiod.line.Value.ACTIVE if rest_level else gpiod.line.Value.INACTIVE  # type: ignore[attr-defined]
        try:
            self._request = gpiod.request_lines(  # type: ignore[attr-defined]
                chip,
                consumer="access-gateway-relay",
                config={
                    line: gpiod.LineSettings(  # type: ignore[attr-defined]
                        direction=gpiod.line.Direction.OUTPUT,  # type: ignore[attr-defined]
                        output_value=rest,
                    )
                },
            )
        except OSError as exc:
            raise HardwareError(f"relay {self.name}: cannot request GPIO line: {exc}") from exc
        self._value = gpiod.line.Value  # type: ignore[attr-defined]

    def _write(self, energized: bool) -> None:
        value = self._value.ACTIVE if energized else self._value.INACTIVE
        try:
            self._request.set_value(self.line, value)
        except OSError as exc:
            raise HardwareError(f"relay {self.name}: GPIO write failed: {exc}") from exc

    def _cancel(self) -> None:
        self._gen += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def set(self, energized: bool) -> None:
        with self._wlock:
            self._cancel()
            self._permanent = energized
            self._write(energized)

    async def pulse(self, energized: bool, seconds: float) -> None:
        with self._wlock:
            self._cancel()
            gen = self._gen
            self._write(energized)
            timer = self._timer_factory(seconds, lambda: self._end(gen))
            timer.daemon = True
            self._timer = timer
            timer.start()

    def _end(self, gen: int) -> None:
        """Timer thread: the pulse is over unless renewed or cancelled meanwhile."""
        with self._wlock:
            if gen != self._gen:
                return
            self._timer = None
            try:
                self._write(self._permanent)
            except HardwareError as exc:
                log.error("relay %s: cannot end the pulse: %s", self.name, exc)


class GpioInputs:
    """Inputs on GPIO lines with pull-ups, polled every ``poll_s`` and debounced."""

    def __init__(
        self,
        chip: str,
        lines: dict[int, Wiring],
        name: str = "gpio",
        stable_s: float = 0.05,
        poll_s: float = 0.01,
    ) -> None:
        gpiod = _gpiod()
        self.name = name
        self.lines = lines
        self.poll_s = poll_s
        self._deb = {no: Debouncer(stable_s) for no in lines}
        self._queue: asyncio.Queue[ReaderEvent | HardwareError] = asyncio.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        try:
            self._request = gpiod.request_lines(  # type: ignore[attr-defined]
                chip,
                consumer="access-gateway-inputs",
                config={
                    tuple(lines): gpiod.LineSettings(  # type: ignore[attr-defined]
                        direction=gpiod.line.Direction.INPUT,  # type: ignore[attr-defined]
                        bias=gpiod.line.Bias.PULL_UP,  # type: ignore[attr-defined]
                    )
                },
            )
        except OSError as exc:
            raise HardwareError(f"inputs {name}: cannot request GPIO lines: {exc}") from exc
        self._active = gpiod.line.Value.ACTIVE  # type: ignore[attr-defined]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"gpio-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import time

        failures = 0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                values = self._request.get_values(list(self.lines))
            except OSError as exc:
                failures += 1
                log.warning("inputs %s: GPIO read failed (%d): %s", self.name, failures, exc)
                if failures >= 3 and self._loop is not None:
                    # Surface it: events() raises, the supervisor restarts the inputs and
                    # reports the service as failing (never silently unwatched).
                    err = HardwareError(f"inputs {self.name}: GPIO reads keep failing: {exc}")
                    self._loop.call_soon_threadsafe(self._queue.put_nowait, err)
                    return
                self._stop.wait(0.2)
                continue
            failures = 0
            for (no, wiring), value in zip(self.lines.items(), values, strict=True):
                stable = self._deb[no].feed(value == self._active, now)
                if stable is not None and self._loop is not None:
                    ev = InputChanged(self.name, no, input_active(wiring, stable))
                    self._loop.call_soon_threadsafe(self._queue.put_nowait, ev)
            self._stop.wait(self.poll_s)

    async def events(self) -> AsyncIterator[ReaderEvent]:
        while True:
            item = await self._queue.get()
            if isinstance(item, HardwareError):
                raise item
            yield item

    async def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
        with contextlib.suppress(OSError):
            self._request.release()
