"""The simulated reader speaks OSDP with Secure Channel to a real libosdp ControlPanel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import osdp
import pytest

from hw_sim.cards import h10301, h10304, to_osdp_bytes
from hw_sim.config import DEMO_SCBK
from hw_sim.osdp_pd import ReaderError, ReaderSettings, SimReader
from hw_sim.sim import Simulator
from tests.support.osdp_peers import OsdpClient

SCBK = bytes.fromhex(DEMO_SCBK)
Link = tuple[Simulator, OsdpClient]


def _wait(cond: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def link(sim: Simulator) -> Iterator[Link]:
    cp = OsdpClient(sim.readers["entry"].port, scbk=SCBK)
    try:
        assert cp.cp.online_wait(101, timeout=8), "PD did not come online"
        assert cp.cp.sc_wait(101, timeout=5), "Secure Channel not established"
        yield sim, cp
    finally:
        cp.close()


def test_secure_channel_card_and_keypad(link: Link) -> None:
    sim, cp = link
    assert sim.readers["entry"].sc_active()
    sim.do("present-card", {"reader": "entry", "card": 4242, "facility": 10})
    ev = cp.event(osdp.Event.CardRead)
    assert ev["format"] == osdp.CardFormat.Wiegand
    assert ev["length"] == 26
    assert ev["data"] == to_osdp_bytes(h10301(4242, 10))
    sim.do("present-card", {"reader": "entry", "card": 500000, "facility": 7, "format": "H10304"})
    ev = cp.event(osdp.Event.CardRead)
    assert ev["length"] == 37
    assert ev["data"] == to_osdp_bytes(h10304(500000, 7))
    sim.do("type-pin", {"reader": "entry", "pin": "2580"})
    ev = cp.event(osdp.Event.KeyPress)
    assert ev["data"] == b"2580\x0d"  # '#' is 0x0D on an OSDP keypad


def test_output_led_buzzer_text_observed_and_door_contact(
    link: Link,
) -> None:
    sim, cp = link
    # timed pulse: temporary ON (code 5) for 1.0 s
    cp.cp.submit_command(
        101, {"command": osdp.Command.Output, "output_no": 0, "control_code": 5, "timer_count": 10}
    )
    assert _wait(lambda: sim.state()["doors"]["main-gate"]["relay"])
    assert sim.doors["main-gate"].state()["unlocked"]
    sim.do("open-door", {"door": "main-gate"})
    ev = cp.event(osdp.Event.Status)
    assert ev["type"] == osdp.StatusReportType.Input
    assert ev["report"][0] == 1  # input 0 active = door open
    assert _wait(lambda: not sim.state()["doors"]["main-gate"]["relay"], timeout=3.0)  # pulse ended
    cp.cp.submit_command(
        101,
        {
            "command": osdp.Command.LED,
            "reader": 0,
            "led_number": 0,
            "control_code": 1,
            "on_color": osdp.CommandLEDColor.Green,
            "off_color": osdp.CommandLEDColor.Black,
            "on_count": 10,
            "off_count": 0,
            "temporary": False,
        },
    )
    assert _wait(lambda: sim.state()["doors"]["main-gate"]["led"]["color"] == "green")
    cp.cp.submit_command(
        101,
        {
            "command": osdp.Command.Buzzer,
            "reader": 0,
            "control_code": 2,
            "on_count": 2,
            "off_count": 2,
            "rep_count": 1,
        },
    )
    assert _wait(lambda: sim.state()["doors"]["main-gate"]["buzzer"]["on"])
    cp.cp.submit_command(
        101,
        {
            "command": osdp.Command.Text,
            "reader": 0,
            "control_code": 1,
            "temp_time": 0,
            "offset_row": 1,
            "offset_col": 1,
            "data": "Use PIN or card",
        },
    )
    assert _wait(lambda: sim.state()["doors"]["main-gate"]["text"] == "Use PIN or card")
    # door closes by itself after pass_s: input 0 goes inactive
    ev = cp.event(osdp.Event.Status, timeout=4.0)
    assert ev["report"][0] == 0


def test_permanent_output_and_exit_button_and_tamper(link: Link) -> None:
    sim, cp = link
    cp.cp.submit_command(
        101, {"command": osdp.Command.Output, "output_no": 0, "control_code": 2, "timer_count": 0}
    )
    assert _wait(lambda: sim.state()["doors"]["main-gate"]["relay"])
    time.sleep(0.3)
    assert sim.state()["doors"]["main-gate"]["relay"]  # permanent: stays on
    cp.cp.submit_command(
        101, {"command": osdp.Command.Output, "output_no": 0, "control_code": 1, "timer_count": 0}
    )
    assert _wait(lambda: not sim.state()["doors"]["main-gate"]["relay"])
    sim.do("press-exit", {"door": "main-gate", "seconds": 0.2})
    ev = cp.event(osdp.Event.Status)
    assert ev["report"][1] == 1
    sim.do("tamper", {"reader": "entry", "active": True})
    ev = cp.event(osdp.Event.Status)
    assert ev["type"] == osdp.StatusReportType.Local
    assert ev["report"][0] == 1


def test_wrong_scbk_never_gets_secure_channel(sim: Simulator) -> None:
    cp = OsdpClient(sim.readers["side"].port, scbk=bytes(16))
    try:
        assert not cp.cp.sc_wait(101, timeout=2)
        assert not sim.readers["side"].sc_active()
    finally:
        cp.close()


def test_reader_settings_are_checked() -> None:
    with pytest.raises(ReaderError, match="SCBK must be 16 bytes"):
        SimReader(ReaderSettings("x", scbk=b"short"))
    with pytest.raises(ReaderError, match="address 200"):
        SimReader(ReaderSettings("x", address=200))


def test_cut_link_and_restore_reported_in_state(link: Link) -> None:
    sim, cp = link
    assert sim.state()["readers"]["entry"]["online"] is True
    # a timed output keeps running at the PD while its line is cut: the relay drops itself
    cp.cp.submit_command(
        101, {"command": osdp.Command.Output, "output_no": 0, "control_code": 5, "timer_count": 10}
    )
    assert _wait(lambda: sim.state()["doors"]["main-gate"]["relay"])
    assert sim.do("cut-link", {"reader": "entry"}) == {"ok": True}
    st = sim.state()["readers"]["entry"]
    assert st["online"] is False
    assert st["link_cut"] is True
    assert _wait(lambda: not sim.state()["doors"]["main-gate"]["relay"], timeout=2.0)
    # commands sent on a cut line never arrive
    cp.cp.submit_command(
        101, {"command": osdp.Command.Output, "output_no": 0, "control_code": 2, "timer_count": 0}
    )
    time.sleep(0.5)
    assert not sim.state()["doors"]["main-gate"]["relay"]
    sim.do("restore-link", {"reader": "entry"})
    assert _wait(lambda: sim.state()["readers"]["entry"]["online"], timeout=8.0)


def test_corrupt_frames_sends_a_bad_crc(link: Link) -> None:
    sim, cp = link
    assert sim.do("corrupt-frames", {"reader": "entry", "count": 1}) == {"ok": True}
    # libosdp's CP drops a PD after one bad reply (and parks it for 300 s)
    assert _wait(lambda: not cp.cp.is_online(101), timeout=3.0)
    assert sim.readers["entry"].channel.corrupt_left == 0
    with pytest.raises(Exception, match="count"):
        sim.do("corrupt-frames", {"reader": "entry", "count": -1})
