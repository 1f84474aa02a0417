"""OSDP CP against the simulator's PD: one corrupted reply takes the reader offline for
seconds, not libosdp's 300 s; outputs are acknowledged, timed, and refused when offline."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator

import pytest

from gateway.errors import HardwareError
from gateway.hardware.events import ReaderOffline, ReaderOnline
from gateway.hardware.osdp import OsdpBus
from gateway.hardware.osdp_reader import OsdpReader
from gateway.hardware.osdp_transport import transport_from_url
from hw_sim.osdp_pd import ReaderSettings, SimReader
from tests.support.osdp_peers import wait_for

KEY = os.urandom(16)


@pytest.fixture
def pd() -> Iterator[SimReader]:
    sim = SimReader(ReaderSettings(name="entry", address=101, scbk=KEY))
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


async def _online(pd: SimReader) -> tuple[OsdpReader, object]:
    bus = OsdpBus(transport_from_url(pd.url))
    reader = bus.add_reader("entry", 101, scbk=KEY)
    await reader.start()
    events = reader.events()
    await wait_for(events, ReaderOnline, 5)
    return reader, events


def test_corrupted_frame_reader_back_within_seconds(
    pd: SimReader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.hardware.osdp")

    async def main() -> None:
        reader, events = await _online(pd)
        try:
            epoch = reader.online_epoch
            t0 = time.monotonic()
            pd.corrupt_frames(1)
            await wait_for(events, ReaderOffline, 3)  # type: ignore[arg-type]
            await wait_for(events, ReaderOnline, 5)  # type: ignore[arg-type]
            assert time.monotonic() - t0 < 4.0
            assert reader.online
            assert reader.health == "online"
            assert reader.online_epoch == epoch + 1  # the door re-asserts its lock
            await reader.output(0, True, seconds=1.0)  # commands work again
            assert pd.outputs[0]
        finally:
            await reader.close()

    asyncio.run(main())
    text = caplog.text
    assert "reader entry: offline; resetting its OSDP session (attempt 1)" in text
    assert "reader entry: recovered after 1 OSDP session reset(s)" in text


def test_outputs_are_acknowledged_timed_and_refused_offline(pd: SimReader) -> None:
    async def main() -> None:
        reader, _ = await _online(pd)
        try:
            await reader.output(0, True, seconds=2.0)
            assert pd.outputs[0]  # acknowledged means applied at the PD
            last = pd.history[-1][2]
            assert (last["control_code"], last["timer_count"]) == (5, 20)
            await reader.output(0, False)
            assert not pd.outputs[0]
            pd.cut_link()
            with pytest.raises(HardwareError):
                await reader.output(0, False, timeout_s=0.5)
            pd.restore_link()
        finally:
            await reader.close()

    asyncio.run(main())
