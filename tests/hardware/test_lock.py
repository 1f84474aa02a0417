"""DoorLock: timed releases in leases, locked state asserted and retried until acknowledged."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import HardwareError
from gateway.hardware.door import DoorConfig, DoorStateMachine
from gateway.hardware.door_controller import DoorController
from gateway.hardware.io import FakeRelay, LockSpec, LockType, Wiring
from gateway.hardware.lock import LEASE_S, DoorLock


class FlakyRelay:
    """Refuses (does not acknowledge) the next ``fail`` commands; records what held."""

    def __init__(self) -> None:
        self.name = "flaky"
        self.energized = False
        self.fail = 0
        self.attempts: list[str] = []
        self.epoch = 0

    def _check(self, what: str) -> None:
        self.attempts.append(what)
        if self.fail > 0:
            self.fail -= 1
            raise HardwareError("reader entry: no acknowledgement within 2.0 s")

    async def set(self, energized: bool) -> None:
        self._check(f"set {energized}")
        self.energized = energized

    async def pulse(self, energized: bool, seconds: float) -> None:
        self._check(f"pulse {energized} {seconds:.1f}")
        self.energized = energized


def test_failed_lock_command_is_retried_until_acknowledged() -> None:
    relay = FlakyRelay()
    ctl = DoorController(
        DoorStateMachine(DoorConfig("gate", unlock_s=0.3)),
        DoorLock("gate", relay, LockSpec()),  # type: ignore[arg-type]
    )

    async def main() -> None:
        task = asyncio.create_task(ctl.run(max_sleep_s=0.05))
        await asyncio.sleep(0.05)
        await ctl.grant()
        assert relay.energized
        relay.fail = 3  # the relock and two retries are lost
        await asyncio.sleep(0.3 + 0.2 + 0.4 + 0.8 + 0.5)  # unlock window, then backoff
        task.cancel()

    asyncio.run(main())
    assert relay.energized is False, relay.attempts
    locks = [a for a in relay.attempts if a == "set False"]
    assert len(locks) >= 5, relay.attempts  # start assert + 3 lost + the acknowledged one
    assert ctl.lock.confirmed


def test_long_release_is_issued_in_leases_and_stops_with_the_controller() -> None:
    now = [0.0]
    relay = FakeRelay()
    lock = DoorLock("gate", relay, LockSpec(), clock=lambda: now[0])

    async def main() -> None:
        await lock.maintain()  # asserted locked at start
        assert relay.history == [False]
        await lock.apply(True, until=30.0)
        assert relay.pulses[-1] == (True, LEASE_S)
        for t in range(1, 31):
            now[0] = float(t)
            await lock.maintain()
        # renewed in chunks: never more than one lease ahead of "now"
        assert len(relay.pulses) >= 30 // LEASE_S
        assert all(s <= LEASE_S for _, s in relay.pulses)
        assert relay.history[-1] is False  # window over: locked
        assert relay.permanent is False

    asyncio.run(main())


def test_lock_reasserted_when_the_reader_returns_and_periodically() -> None:
    now = [0.0]
    relay = FlakyRelay()
    lock = DoorLock("gate", relay, LockSpec(), clock=lambda: now[0], assert_every_s=10)  # type: ignore[arg-type]

    async def main() -> None:
        await lock.maintain()
        assert relay.attempts == ["set False"]
        now[0] = 1.0
        await lock.maintain()
        assert relay.attempts == ["set False"]  # nothing new
        relay.epoch += 1  # the reader came back online
        await lock.maintain()
        assert relay.attempts == ["set False"] * 2
        now[0] = 11.5
        await lock.maintain()
        assert relay.attempts == ["set False"] * 3

    asyncio.run(main())


def test_release_refused_once_the_safe_state_began() -> None:
    relay = FakeRelay()
    lock = DoorLock("gate", relay, LockSpec(LockType.FAIL_SECURE, Wiring.NO))

    async def main() -> None:
        await lock.safe_state()
        await lock.apply(True)

    asyncio.run(main())
    assert relay.history == [False]


def test_safe_state_retries_then_reports() -> None:
    relay = FakeRelay()
    relay.fail = 2
    lock = DoorLock("gate", relay, LockSpec())
    asyncio.run(lock.safe_state(limit_s=2.0))
    assert relay.history == [False]
    assert relay.attempts == 3
    relay.fail = 100
    with pytest.raises(HardwareError):
        asyncio.run(lock.safe_state(limit_s=0.3))


def test_a_late_acknowledgement_does_not_confirm_a_newer_failed_relock() -> None:
    class SlowPulseRelay(FlakyRelay):
        def __init__(self) -> None:
            super().__init__()
            self.gate = asyncio.Event()

        async def pulse(self, energized: bool, seconds: float) -> None:
            self.attempts.append("pulse")
            await self.gate.wait()  # the reader acknowledges late

    relay = SlowPulseRelay()
    lock = DoorLock("gate", relay, LockSpec())  # type: ignore[arg-type]

    async def main() -> None:
        release = asyncio.create_task(lock.apply(True))
        await asyncio.sleep(0)
        relay.fail = 1
        with pytest.raises(HardwareError):
            await lock.apply(False)  # the relock is lost
        relay.gate.set()
        await release
        assert not lock.confirmed  # so maintain() retries the relock
        await lock.maintain()
        assert lock.confirmed
        assert relay.attempts[-1] == "set False"

    asyncio.run(main())


def test_maintain_does_nothing_once_the_safe_state_began() -> None:
    """After safe_state() began, the door task's maintain() must not re-issue a command
    (it would override the shutdown state)."""
    relay = FakeRelay()
    lock = DoorLock(
        "gate", relay, LockSpec(LockType.FAIL_SAFE, Wiring.NO, release_on_shutdown=True)
    )

    async def main() -> None:
        await lock.safe_state()
        before = list(relay.history)
        await lock.maintain()
        assert relay.history == before

    asyncio.run(main())
