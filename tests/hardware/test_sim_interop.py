"""Interop: the simulator's OSDP PD (hw-sim, another team's code) against our CP."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.hardware import open_reader
from gateway.hardware.events import CardRead, InputChanged, KeyPress, ReaderOnline
from tests.support.osdp_peers import SCBK, wait_for

osdp_pd = pytest.importorskip("hw_sim.osdp_pd", reason="hw-sim simulator not importable")


@pytest.mark.parametrize(
    ("fmt", "facility", "card"),
    [
        ("H10301", 42, 4242),
        ("H10306", 600, 60000),
        ("Corp1000", 4000, 1000000),
        ("H10304", 65000, 500000),
    ],
)
def test_sim_reader_cards_keys_inputs_relay(fmt: str, facility: int, card: int) -> None:
    relay_on = threading.Event()

    def on_output(no: int, on: bool) -> None:
        if no == 0 and on:
            relay_on.set()

    try:
        sim = osdp_pd.SimReader(
            osdp_pd.ReaderSettings("sim", scbk=SCBK, card_format=fmt, facility=facility),
            on_output=on_output,
        )
    except TypeError as exc:  # the simulator's API moved on
        pytest.skip(f"hw_sim.osdp_pd API changed: {exc}")
    sim.start()

    async def main() -> None:
        reader = open_reader(sim.url, "gate", scbk=SCBK)
        await reader.start()
        events = reader.events()
        try:
            await wait_for(events, ReaderOnline, 6)
            sim.present_card(card)
            got = await wait_for(events, CardRead)
            assert (got.fmt, got.facility, got.card_number) == (fmt, facility, card)
            sim.type_keys("12#")
            keys = [(await wait_for(events, KeyPress)).key for _ in range(3)]
            assert keys == ["1", "2", "#"]
            sim.set_input(0, True)
            ev = await wait_for(events, InputChanged)
            while ev.input_no != 0:
                ev = await wait_for(events, InputChanged)
            assert ev.active
            await reader.output(0, True, seconds=2)
            assert await asyncio.to_thread(relay_on.wait, 3.0)
            assert sim.outputs[0]
        finally:
            await reader.close()

    try:
        asyncio.run(main())
    finally:
        sim.stop()
