"""GPIO relay with a fake libgpiod: requested at the locked level, pulses end by themselves
(a timer thread, even while the event loop is blocked), set() cancels a pulse."""

from __future__ import annotations

import asyncio
import enum
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.hardware.io import GpioRelay, LockSpec, LockType, Wiring, relay_energized
from gateway.hardware.lock import DoorLock

LEASE = 0.5


class _Value(enum.Enum):
    INACTIVE = 0
    ACTIVE = 1


class _Request:
    def __init__(self, config: dict[int, Any]) -> None:
        self.levels = {line: s.output_value for line, s in config.items()}
        self.writes: list[tuple[float, _Value]] = []

    def set_value(self, line: int, value: _Value) -> None:
        self.levels[line] = value
        self.writes.append((time.monotonic(), value))

    def release(self) -> None:
        pass


@pytest.fixture
def fake_gpiod(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[_Request]]:
    requests: list[_Request] = []
    mod = types.ModuleType("gpiod")

    def request_lines(chip: str, consumer: str, config: dict[int, Any]) -> _Request:
        req = _Request(config)
        requests.append(req)
        return req

    mod.request_lines = request_lines  # type: ignore[attr-defined]
    mod.LineSettings = types.SimpleNamespace  # type: ignore[attr-defined]
    mod.line = types.SimpleNamespace(  # type: ignore[attr-defined]
        Direction=types.SimpleNamespace(OUTPUT="out", INPUT="in"), Value=_Value
    )
    monkeypatch.setitem(sys.modules, "gpiod", mod)
    return requests


def test_line_requested_at_the_locked_level(fake_gpiod: list[_Request]) -> None:
    # a fail-safe maglock on NO contact is locked when energised: requested ACTIVE
    spec = LockSpec(LockType.FAIL_SAFE, Wiring.NO)
    GpioRelay("gpiochip0", 17, rest_level=relay_energized(spec, False))
    assert fake_gpiod[-1].levels[17] is _Value.ACTIVE
    GpioRelay("gpiochip0", 18, rest_level=relay_energized(LockSpec(), False))
    assert fake_gpiod[-1].levels[18] is _Value.INACTIVE


def test_pulse_relocks_by_itself_even_with_the_loop_blocked(fake_gpiod: list[_Request]) -> None:
    relay = GpioRelay("gpiochip0", 17, rest_level=False)
    req = fake_gpiod[-1]
    lock = DoorLock("gate", relay, LockSpec(), lease_s=LEASE, renew_before_s=0.2)

    async def main() -> None:
        await lock.maintain()  # asserted locked at start
        await lock.apply(True, until=time.monotonic() + 30)  # a long remote unlock
        assert req.levels[17] is _Value.ACTIVE
        time.sleep(LEASE + 0.3)  # noqa: ASYNC251 - the loop is stuck: nobody renews the lease

    asyncio.run(main())
    assert req.levels[17] is _Value.INACTIVE, req.writes


def test_set_cancels_a_pulse_and_renewal_restarts_it(fake_gpiod: list[_Request]) -> None:
    relay = GpioRelay("gpiochip0", 17, rest_level=False)
    req = fake_gpiod[-1]

    async def main() -> None:
        await relay.pulse(True, 0.3)
        await asyncio.sleep(0.2)
        await relay.pulse(True, 0.3)  # renewed before the end
        await asyncio.sleep(0.2)
        assert req.levels[17] is _Value.ACTIVE
        await asyncio.sleep(0.3)
        assert req.levels[17] is _Value.INACTIVE
        await relay.pulse(True, 0.3)
        await relay.set(False)
        await relay.set(True)  # permanent level now energised
        await asyncio.sleep(0.5)
        assert req.levels[17] is _Value.ACTIVE  # the cancelled pulse did not touch it

    asyncio.run(main())
