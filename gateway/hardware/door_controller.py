"""Glue for one door: state machine + lock relay + inputs + timer (async, thin).

The decision logic stays in :class:`~gateway.hardware.door.DoorStateMachine`; this class
only feeds it inputs, executes its lock commands and hands its events to ``on_event``.
Its :meth:`DoorController.run` loop also keeps the lock honest (renews timed releases,
asserts the locked state, retries unacknowledged commands: :mod:`gateway.hardware.lock`).

Lock commands run in a per-door queue: the state machine moves at once (synchronously, in
decision order), its commands are applied one step after the other by a task of this door,
so a later lock is never overtaken by an earlier release, and a relay that is slow to
acknowledge delays only its own door (:meth:`DoorController.grant_nowait`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from gateway.errors import HardwareError
from gateway.hardware.door import DoorEvent, DoorStateMachine, Step
from gateway.hardware.events import ReaderEvent
from gateway.hardware.io import DoorInputMap, InputRole
from gateway.hardware.lock import DoorLock

log = logging.getLogger(__name__)


class DoorController:
    """Drive one door. ``on_event`` receives every DoorEvent (alarms included)."""

    def __init__(
        self,
        machine: DoorStateMachine,
        lock: DoorLock,
        inputs: DoorInputMap | None = None,
        *,
        on_event: Callable[[DoorEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        input_readers: Iterable[str] = (),
    ) -> None:
        self.machine = machine
        self.lock = lock
        self.inputs = inputs or DoorInputMap()
        self.on_event = on_event
        self.clock = clock
        self.input_readers = set(input_readers)  # readers whose inputs feed this door
        self.name = machine.config.name
        self._wake = asyncio.Event()
        self._tail: asyncio.Task[Step] | None = None
        self._queued: set[asyncio.Task[Step]] = set()

    def _submit(self, step: Step) -> asyncio.Task[Step]:
        """Queue ``step``'s commands behind this door's earlier ones; returns at once."""
        until = self.machine.unlock_until  # the window as decided, not as found later
        task = asyncio.create_task(
            self._run_step(self._tail, step, until), name=f"door-{self.name}-lock"
        )
        self._tail = task
        self._queued.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Step]) -> None:
        self._queued.discard(task)
        if self._tail is task:
            self._tail = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("door %s: lock step failed: %r", self.name, exc)

    async def _run_step(
        self, prev: asyncio.Task[Step] | None, step: Step, until: float | None
    ) -> Step:
        if prev is not None and not prev.done():
            await asyncio.wait([prev])  # strict per-door order; its outcome is its own
        return await self._apply_now(step, until)

    @staticmethod
    async def applied(task: asyncio.Task[Step]) -> Step | None:
        """Wait until a queued step was applied (acknowledged or given up); None when it
        was dropped at shutdown. Cancelling the waiter does not cancel the step."""
        await asyncio.wait([task])
        return None if task.cancelled() else task.result()

    async def _apply(self, step: Step) -> Step:
        await self.applied(self._submit(step))
        return step

    async def _apply_now(self, step: Step, until: float | None) -> Step:
        for cmd in step.commands:
            if self.lock.stopping:  # safe_state() has the last word
                log.info("door %s: queued lock command dropped, shutting down", self.name)
                break
            try:
                await self.lock.apply(cmd.release, until)
            except HardwareError as exc:
                log.error("door %s: lock command failed (retrying): %s", self.name, exc)
        if self.machine.released:
            self.lock.extend(self.machine.unlock_until)
        for ev in step.events:
            level = logging.WARNING if ev.alarm else logging.INFO
            log.log(level, "door %s: %s", self.name, ev.kind)
            if self.on_event is not None:
                self.on_event(ev)
        self._wake.set()
        return step

    async def grant(self, reason: str = "granted", seconds: float | None = None) -> Step:
        """Access granted: release the lock for the configured time (or ``seconds``)."""
        return await self._apply(self.machine.grant(self.clock(), reason=reason, seconds=seconds))

    def grant_nowait(
        self, reason: str = "granted", seconds: float | None = None
    ) -> asyncio.Task[Step]:
        """Grant now (the state machine moves at once) and queue the release for this
        door's relay; returns the step's task without waiting for the acknowledgement
        (await :meth:`applied` for that). A failed release is logged and retried as in
        :meth:`grant`."""
        return self._submit(self.machine.grant(self.clock(), reason=reason, seconds=seconds))

    async def handle(self, event: ReaderEvent) -> Step:
        """Feed an InputChanged/Tamper from this door's reader or I/O board."""
        role = self.inputs.role(event)
        if role is None:
            return Step()
        return await self.handle_role(*role)

    async def handle_role(self, kind: InputRole, active: bool) -> Step:
        """Feed one input by its meaning at this door (e.g. from a GPIO line)."""
        now = self.clock()
        if kind is InputRole.CONTACT:
            step = self.machine.door_opened(now) if active else self.machine.door_closed(now)
            return await self._apply(step)
        if kind is InputRole.EXIT:
            return await self._apply(self.machine.exit_request(now)) if active else Step()
        ev = DoorEvent(self.name, "tamper" if active else "tamper_cleared", now, alarm=active)
        return await self._apply(Step((ev,)))

    async def tick(self) -> Step:
        """Advance the timers once."""
        return await self._apply(self.machine.tick(self.clock()))

    async def run(self, max_sleep_s: float = 1.0) -> None:
        """Tick whenever a deadline is due and keep the lock honest (cancel to stop).

        The first pass asserts the locked state (retried until the relay acknowledges)."""
        while True:
            await self.lock.maintain()
            now = self.clock()
            deadline = self.machine.next_deadline()
            due = self.lock.next_due() if deadline is None else min(deadline, self.lock.next_due())
            wait = max(0.0, due - now)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, max_sleep_s)):
                    await self._wake.wait()
            await self.tick()

    async def shutdown(self) -> None:
        """Put the lock in its safe state (fail-secure locked; fail-safe as configured);
        no release is applied after this began."""
        try:
            await self.lock.safe_state()
        except HardwareError as exc:
            log.error("door %s: cannot reach safe state: %s", self.name, exc)
