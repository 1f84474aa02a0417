"""OSDP CP over a pseudo-terminal (the serial-line code path without hardware)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from typing import Any

import osdp
import pytest

from gateway.hardware import open_reader
from gateway.hardware.events import CardRead, ReaderOffline, ReaderOnline
from gateway.hardware.osdp_reader import OsdpReader
from gateway.hardware.wiegand import bits_to_bytes, encode
from tests.support.osdp_peers import CAPS, SCBK, FdChannel, wait_for


@pytest.mark.parametrize("scheme", ["osdp+pty", "osdp"])  # os-level pty, and pyserial
def test_pty_card_read_and_unplug(scheme: str) -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    tty.setraw(master)
    os.set_blocking(master, False)
    os.close(slave)  # the CP opens it by path, like /dev/ttyUSB0
    info = osdp.PDInfo(101, FdChannel(master), scbk=SCBK, flags=[osdp.LibFlag.EnforceSecure])
    pd: Any = osdp.PeripheralDevice(info, CAPS, log_level=osdp.LogLevel.Emergency)
    pd.start()

    async def main() -> None:
        reader = open_reader(f"{scheme}://{path}?address=101&baud=115200", "pty", scbk=SCBK)
        assert isinstance(reader, OsdpReader)
        await reader.start()
        events = reader.events()
        try:
            await wait_for(events, ReaderOnline, 6)
            bits = encode("H10304", 321, 123456)
            pd.submit_event(
                {
                    "event": osdp.Event.CardRead,
                    "reader_no": 0,
                    "direction": 0,
                    "format": osdp.CardFormat.Wiegand,
                    "length": len(bits),
                    "data": bits_to_bytes(bits),
                }
            )
            card = await wait_for(events, CardRead)
            assert (card.fmt, card.facility, card.card_number) == ("H10304", 321, 123456)
            pd.teardown()
            os.close(master)  # unplug: the pty hangs up
            await wait_for(events, ReaderOffline, 3)
            await asyncio.sleep(0.5)
            assert reader.bus.thread_alive
        finally:
            await reader.close()

    try:
        asyncio.run(main())
    finally:
        with contextlib.suppress(RuntimeError):
            pd.teardown()
        with contextlib.suppress(OSError):
            os.close(master)
