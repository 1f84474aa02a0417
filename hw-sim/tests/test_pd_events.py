"""The simulator delivers what it acknowledges: 200 keys in one ``press-keys`` arrive (in
keypad reports libosdp can hold) instead of aborting the process, and a swipe nobody can
receive is refused instead of acknowledged and dropped (#18 item 9)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import osdp
import pytest

from hw_sim.config import DEMO_SCBK
from hw_sim.sim import SimError, Simulator
from tests.support.osdp_peers import OsdpClient

TWO_HUNDRED_KEYS = textwrap.dedent(
    """
    import sys, time
    sys.path[:0] = ["hw-sim", "."]
    import osdp
    from hw_sim.config import DEMO_SCBK
    from hw_sim.osdp_pd import ReaderSettings, SimReader
    from tests.support.osdp_peers import OsdpClient
    SCBK = bytes.fromhex(DEMO_SCBK)
    reader = SimReader(ReaderSettings("entry", scbk=SCBK))
    reader.start()
    cp = OsdpClient(reader.port, scbk=SCBK)
    assert cp.cp.online_wait(101, timeout=8) and cp.cp.sc_wait(101, timeout=5)
    reader.type_keys("1234567890" * 20)  # what press-keys does
    got = b""
    deadline = time.monotonic() + 15
    while len(got) < 200 and time.monotonic() < deadline:
        ev = cp.cp.get_event(101, timeout=0.2)
        if ev is not None and ev["event"] == osdp.Event.KeyPress:
            got += ev["data"]
    print(len(got), got == b"1234567890" * 20, cp.cp.is_online(101))
    cp.close()
    reader.stop()
    """
)


@pytest.mark.timeout(90)
def test_two_hundred_keys_in_one_press_keys_arrive_in_order() -> None:
    from tests.conftest import REPO

    run = subprocess.run(
        [sys.executable, "-c", TWO_HUNDRED_KEYS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["200", "True", "True"], run.stdout + run.stderr[-2000:]


def test_too_many_keys_refused_clearly(sim: Simulator) -> None:
    with pytest.raises(SimError, match="keys"):
        sim.do("press-keys", {"reader": "entry", "keys": "1" * 5000})


def test_swipe_without_a_control_panel_is_refused_not_acknowledged(sim: Simulator) -> None:
    with pytest.raises(SimError, match="offline"):
        sim.do("present-card", {"reader": "entry", "card": 4242, "facility": 10})
    with pytest.raises(SimError, match="offline"):
        sim.do("type-pin", {"reader": "entry", "pin": "1234"})
    cp = OsdpClient(sim.readers["entry"].port, scbk=bytes.fromhex(DEMO_SCBK))
    try:
        assert cp.cp.online_wait(101, timeout=8)
        assert cp.cp.sc_wait(101, timeout=5)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # the refused swipe never shows up later
            ev = cp.cp.get_event(101, timeout=0.2)
            assert ev is None or ev["event"] not in (osdp.Event.CardRead, osdp.Event.KeyPress)
        assert sim.do("present-card", {"reader": "entry", "card": 4242, "facility": 10})["ok"]
        ev = cp.event(osdp.Event.CardRead)
        assert ev["length"] == 26
        reader = sim.readers["entry"]
        deadline = time.monotonic() + 3
        while reader.events.delivered < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.events.delivered >= 1
        assert reader.events.dropped == 0
    finally:
        cp.close()


def test_an_accepted_event_libosdp_drops_is_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from hw_sim.pd_events import MAX_PENDING, EventTracker

    tracker = EventTracker("entry")
    assert tracker.reserve(2, online=True, need_online=True) is None
    tracker._done({"event": 1}, 0)  # delivered
    with caplog.at_level("WARNING", logger="hw_sim.pd_events"):
        tracker._done({"event": 1}, 1)  # transport failure after it was accepted
    assert (tracker.pending, tracker.delivered, tracker.dropped) == (0, 1, 1)
    assert "dropped" in caplog.text
    why = tracker.reserve(MAX_PENDING + 1, online=True, need_online=False)
    assert why is not None
    assert "not delivered" in why
    assert tracker.pending == 0
