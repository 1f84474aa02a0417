"""Lock/wiring level mapping, safe state, input mapping, debounce, fakes."""

from __future__ import annotations

import asyncio

import pytest

from gateway.hardware.events import InputChanged, Tamper
from gateway.hardware.io import (
    Debouncer,
    DoorInputMap,
    FakeInputs,
    FakeRelay,
    InputRole,
    LockSpec,
    LockType,
    Wiring,
    input_active,
    relay_energized,
    safe_state,
)
from gateway.hardware.lock import DoorLock

FS, FSAFE = LockType.FAIL_SECURE, LockType.FAIL_SAFE


@pytest.mark.parametrize(
    ("lock", "contact", "release", "energized"),
    [
        (FS, Wiring.NO, True, True),  # strike on NO: power to open
        (FS, Wiring.NO, False, False),
        (FS, Wiring.NC, True, False),  # strike on NC: cut coil to power the strike
        (FS, Wiring.NC, False, True),
        (FSAFE, Wiring.NO, True, False),  # maglock on NO: drop power to open
        (FSAFE, Wiring.NO, False, True),
        (FSAFE, Wiring.NC, True, True),
        (FSAFE, Wiring.NC, False, False),
    ],
)
def test_relay_level_table(lock: LockType, contact: Wiring, release: bool, energized: bool) -> None:
    assert relay_energized(LockSpec(lock, contact), release) is energized


def test_safe_state() -> None:
    # fail-secure: always locked at shutdown, whatever the flag says
    assert safe_state(LockSpec(FS, Wiring.NO, release_on_shutdown=True)) is False
    assert safe_state(LockSpec(FS, Wiring.NC)) is True
    # fail-safe: locked (powered) unless release is configured
    assert safe_state(LockSpec(FSAFE, Wiring.NO)) is True
    assert safe_state(LockSpec(FSAFE, Wiring.NO, release_on_shutdown=True)) is False


def test_door_lock_drives_relay() -> None:
    async def main() -> None:
        relay = FakeRelay()
        lock = DoorLock("gate", relay, LockSpec(FSAFE, Wiring.NO))
        await lock.apply(True)
        await lock.apply(False)
        await lock.safe_state()
        assert relay.history == [False, True, True]

    asyncio.run(main())


def test_input_active_mapping() -> None:
    # pull-up: level True = circuit open
    assert input_active(Wiring.NO, False) is True  # NO button pressed closes to ground
    assert input_active(Wiring.NO, True) is False
    assert input_active(Wiring.NC, True) is True  # NC contact opens when the door opens
    assert input_active(Wiring.NC, False) is False


def test_debouncer() -> None:
    d = Debouncer(stable_s=0.05)
    assert d.feed(True, 0.0) is None
    assert d.feed(False, 0.01) is None  # bounce
    assert d.feed(True, 0.02) is None
    assert d.tick(0.06) is None  # only 40 ms stable
    assert d.tick(0.07) is True
    assert d.feed(True, 0.2) is None  # no change
    assert d.feed(False, 0.3) is None
    assert d.tick(0.36) is False


def test_fake_inputs_debounce_and_wiring() -> None:
    async def main() -> None:
        inputs = FakeInputs("board", {0: Wiring.NC, 1: Wiring.NO}, stable_s=0.0)
        assert inputs.set(0, True, 0.0) == InputChanged("board", 0, True)
        assert inputs.set(1, False, 0.0) == InputChanged("board", 1, True)
        assert inputs.set(1, False, 0.1) is None
        got = [await anext(inputs.events()) for _ in range(2)]
        assert [e.input_no for e in got if isinstance(e, InputChanged)] == [0, 1]

    asyncio.run(main())


def test_door_input_map_roles() -> None:
    m = DoorInputMap()
    assert m.role(InputChanged("r", 0, True)) == (InputRole.CONTACT, True)
    assert m.role(InputChanged("r", 1, False)) == (InputRole.EXIT, False)
    assert m.role(InputChanged("r", 2, True)) is None
    assert m.role(Tamper("r", True)) == (InputRole.TAMPER, True)
    assert DoorInputMap(tamper=3).role(InputChanged("r", 3, True)) == (InputRole.TAMPER, True)
