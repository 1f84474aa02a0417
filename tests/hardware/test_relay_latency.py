"""A relay command goes to the bus at once: it does not wait for the CP's next refresh or
poll (OSDP, Secure Channel, the simulator's PD), and a GPIO relay is written in the step
that applies the decision, with no tick in between.

No absolute time bound: the OSDP figure is a ratio to the configured idle refresh cadence,
made long (2 s) so that waiting for even one refresh would fail the test."""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
import types
from typing import Any

import pytest

from gateway.hardware import open_reader
from gateway.hardware.door import DoorConfig, DoorStateMachine
from gateway.hardware.door_controller import DoorController
from gateway.hardware.events import ReaderOnline
from gateway.hardware.io import GpioRelay, LockSpec, relay_energized
from gateway.hardware.lock import DoorLock
from gateway.hardware.osdp_reader import OsdpReader
from tests.support.osdp_peers import SCBK, wait_for

osdp_pd = pytest.importorskip("hw_sim.osdp_pd", reason="hw-sim simulator not importable")

IDLE_REFRESH_S = 2.0
MAX_RATIO = 0.25  # of the idle cadence; waiting for one refresh would be >= 1


def test_osdp_output_reaches_the_pd_without_waiting_for_a_refresh() -> None:
    received: list[float] = []
    got = threading.Event()

    def on_output(no: int, on: bool) -> None:
        if no == 0:
            received.append(time.monotonic())
            got.set()

    sim = osdp_pd.SimReader(osdp_pd.ReaderSettings("sim", scbk=SCBK), on_output=on_output)
    sim.start()

    async def main() -> list[tuple[float, float]]:
        reader = open_reader(sim.url, "gate", scbk=SCBK)
        assert isinstance(reader, OsdpReader)
        await reader.start()
        try:
            await wait_for(reader.events(), ReaderOnline, 8)
            assert sim.sc_active(), "the Secure Channel must be up"
            reader.bus.refresh_s = IDLE_REFRESH_S
            await asyncio.sleep(0.2)  # the bus thread is now in a long idle wait
            ratios = []
            for i in range(4):
                got.clear()
                t0 = time.monotonic()
                await reader.output(0, i % 2 == 0)  # returns on the PD's acknowledgement
                acked = time.monotonic() - t0
                assert await asyncio.to_thread(got.wait, 3 * IDLE_REFRESH_S)
                ratios.append(((received[-1] - t0) / IDLE_REFRESH_S, acked / IDLE_REFRESH_S))
                await asyncio.sleep(0.3 + 0.4 * i)  # other phases of the idle cadence
            return ratios
        finally:
            await reader.close()

    try:
        ratios = asyncio.run(main())
    finally:
        sim.stop()
    to_pd = statistics.median(r for r, _ in ratios)
    to_ack = statistics.median(a for _, a in ratios)
    assert to_pd < MAX_RATIO, ratios
    assert to_ack < MAX_RATIO, ratios


class _Value:
    ACTIVE = "active"
    INACTIVE = "inactive"


class _Request:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def set_value(self, line: int, value: str) -> None:
        self.writes.append(value)

    def release(self) -> None:
        pass


def test_gpio_relay_is_written_in_the_step_that_grants(monkeypatch: pytest.MonkeyPatch) -> None:
    request = _Request()
    mod: Any = types.ModuleType("gpiod")
    mod.request_lines = lambda chip, consumer, config: request
    mod.LineSettings = types.SimpleNamespace
    mod.line = types.SimpleNamespace(
        Direction=types.SimpleNamespace(OUTPUT="out", INPUT="in"), Value=_Value
    )
    monkeypatch.setitem(sys.modules, "gpiod", mod)
    spec = LockSpec()
    release = _Value.ACTIVE if relay_energized(spec, True) else _Value.INACTIVE

    async def main() -> None:
        relay = GpioRelay("/dev/gpiochip0", 17, rest_level=relay_energized(spec, False))
        lock = DoorLock("front", relay, spec)
        door = DoorController(DoorStateMachine(DoorConfig("front", unlock_s=1.0)), lock)
        door.grant_nowait()
        assert request.writes == []  # queued, not yet applied
        await asyncio.sleep(0)  # one pass of the event loop: no tick, no poll
        assert request.writes == [release]
        await relay.set(relay_energized(spec, False))  # cancel the pulse's timer

    asyncio.run(main())
