"""One door's lock: timed releases, asserted locked state, retries until acknowledged.

Every release is a *timed* output of at most ``lease_s`` (5 s): the relay (the OSDP
reader's firmware, or the GPIO relay's timer thread) relocks by itself when it ends, so a
controller that dies mid-unlock leaves the door unlocked for at most ``lease_s``. A longer
release (a 30 s remote ``unlock``, a door held open inside its window) is renewed with a
fresh timed output when less than ``renew_before_s`` of the current one is left, i.e.
re-issued in chunks of at most ``lease_s``.

The locked state is asserted (a permanent "locked" level, which also cancels a running
timed output) at start, whenever the relay's reader comes back online (its ``epoch``
changes), every ``assert_every_s``, and after any command that was not acknowledged:
:meth:`DoorLock.maintain` retries with a capped backoff until the relay acknowledges.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.errors import HardwareError
from gateway.hardware.io import LockSpec, Relay, relay_energized, safe_state

log = logging.getLogger(__name__)

LEASE_S = 5.0
RENEW_BEFORE_S = 2.5
ASSERT_EVERY_S = 10.0
RETRY_INITIAL_S = 0.2
RETRY_CAP_S = 2.0
_UNSEEN = object()


class DoorLock:
    """A relay driven through a :class:`LockSpec`, with leases and asserted locking."""

    def __init__(
        self,
        door: str,
        relay: Relay,
        spec: LockSpec,
        *,
        clock: Callable[[], float] = time.monotonic,
        lease_s: float = LEASE_S,
        renew_before_s: float = RENEW_BEFORE_S,
        assert_every_s: float = ASSERT_EVERY_S,
    ) -> None:
        if not 0 < renew_before_s < lease_s:
            raise HardwareError(f"door {door}: need 0 < renew_before_s < lease_s")
        self.door = door
        self.relay = relay
        self.spec = spec
        self.clock = clock
        self.lease_s = lease_s
        self.renew_before_s = renew_before_s
        self.assert_every_s = assert_every_s
        self.locked_level = relay_energized(spec, False)
        self.release_level = relay_energized(spec, True)
        self.stopping = False
        self._release_until: float | None = None
        self._lease_end = 0.0
        self._confirmed = False
        self._last_assert = float("-inf")
        self._epoch: object = _UNSEEN
        self._failures = 0
        self._retry_at = float("-inf")
        self._gen = 0
        self._acknowledged = False

    @property
    def confirmed(self) -> bool:
        """True when the relay acknowledged the state the door should be in."""
        return self._confirmed

    def _relay_epoch(self) -> object:
        return getattr(self.relay, "epoch", None)

    async def apply(self, release: bool, until: float | None = None) -> None:
        """Release the door until ``until`` (clock time; default: one lease), or secure it.

        Raises HardwareError when the relay does not acknowledge; :meth:`maintain` keeps
        retrying. Releases are refused once :meth:`safe_state` has begun.
        """
        now = self.clock()
        if release:
            if self.stopping:
                log.warning("door %s: release refused, shutting down", self.door)
                return
            self._release_until = now + self.lease_s if until is None else until
            await self._pulse(now)
        else:
            self._release_until = None
            await self._lock(now)

    def extend(self, until: float | None) -> None:
        """The door stays released until ``until`` (the renewals follow it)."""
        if self._release_until is not None and until is not None:
            self._release_until = until

    def _begin(self) -> int:
        # Commands reach the relay in the order they are decided (submitted before the
        # first await); only the latest one's acknowledgement confirms the state.
        self._gen += 1
        self._confirmed = False
        return self._gen

    async def _pulse(self, now: float) -> None:
        assert self._release_until is not None  # noqa: S101 - callers check
        seconds = min(self.lease_s, max(0.1, self._release_until - now))
        gen, epoch = self._begin(), self._relay_epoch()
        await self.relay.pulse(self.release_level, seconds)
        if gen == self._gen:
            self._lease_end = now + seconds
            self._confirmed = True
            self._epoch = epoch

    async def _lock(self, now: float) -> None:
        gen, epoch = self._begin(), self._relay_epoch()
        await self.relay.set(self.locked_level)
        if gen == self._gen:
            self._confirmed = True
            self._last_assert = now
            self._epoch = epoch

    def next_due(self) -> float:
        """Clock time by which :meth:`maintain` should run again."""
        if not self._confirmed:
            return self._retry_at
        if self._release_until is not None:
            if self._lease_end >= self._release_until:
                return self._release_until
            return min(self._release_until, self._lease_end - self.renew_before_s)
        return self._last_assert + self.assert_every_s

    async def maintain(self) -> None:
        """Renew a release's lease; assert the locked state (at start, after the reader
        comes back, periodically, after a failure), retrying until acknowledged.

        Does nothing once :meth:`safe_state` has begun: it has the last word on the relay."""
        if self.stopping:
            return
        now = self.clock()
        if now < self._retry_at:
            return
        reconnected = self._relay_epoch() != self._epoch
        try:
            if self._release_until is not None and now < self._release_until:
                renew = (
                    self._lease_end < self._release_until
                    and self._lease_end - now < self.renew_before_s
                )
                if reconnected or not self._confirmed or renew:
                    await self._pulse(now)
            else:
                if self._release_until is not None:
                    self._release_until = None  # window over: relock (fail closed)
                    self._confirmed = False
                if (
                    reconnected
                    or not self._confirmed
                    or now - self._last_assert >= self.assert_every_s
                ):
                    await self._lock(now)
        except HardwareError as exc:
            self._failures += 1
            delay = min(RETRY_CAP_S, RETRY_INITIAL_S * 2 ** (self._failures - 1))
            self._retry_at = now + delay
            # before the first acknowledgement (start-up, reader not online yet): expected
            first = self._failures == 1 and self._acknowledged
            (log.warning if first else log.debug)(
                "door %s: lock command not acknowledged (%s); retry %d in %.1f s",
                self.door,
                exc,
                self._failures,
                delay,
            )
            return
        self._acknowledged = True
        if self._failures:
            log.info(
                "door %s: lock state acknowledged after %d failed attempt(s)",
                self.door,
                self._failures,
            )
        self._failures = 0
        self._retry_at = float("-inf")

    async def safe_state(self, limit_s: float = 3.0) -> None:
        """Put the lock in its shutdown state (see :func:`~gateway.hardware.io.safe_state`),
        retrying until acknowledged or ``limit_s``; refuse releases from now on."""
        self.stopping = True
        self._release_until = None
        level = safe_state(self.spec)
        log.info("door %s: lock to shutdown state (relay energized=%s)", self.door, level)
        deadline = time.monotonic() + limit_s
        while True:
            try:
                await self.relay.set(level)
                return
            except HardwareError:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.2)
