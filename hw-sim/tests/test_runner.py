"""Scenario runner against a fake gateway.

The fake gateway is a real libosdp ControlPanel on the simulator's reader that grants every
card: it pulses relay output 0 and publishes ``access.granted`` to a private mosquitto.
Evaluation details run with an injected observer (no broker).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import osdp
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hw_sim.config import DEMO_SCBK
from hw_sim.evaluation import _leak
from hw_sim.runner import (
    Observed,
    format_report,
    run_scenarios,
    run_scenarios_async,
)
from hw_sim.sim import Simulator
from tests.support.osdp_peers import OsdpClient

PREFIX = "test"


class FakeGateway:
    """Grants every card at main-gate; publishes anonymised events (never the number)."""

    def __init__(self, sim: Simulator, mqtt_port: int) -> None:
        port = sim.readers["entry"].port
        self.osdp = OsdpClient(port, scbk=bytes.fromhex(DEMO_SCBK), start=False)
        self.cp = self.osdp.cp
        self.mqtt = paho.Client(CallbackAPIVersion.VERSION2)
        self.mqtt.connect("127.0.0.1", mqtt_port)
        self.mqtt.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.cp.start()
        assert self.cp.sc_wait(101, timeout=8)
        self._thread.start()

    def _publish(self, etype: str, **fields: Any) -> None:
        payload = {"type": etype, "site": "demo", "gate": "gate-1", **fields}
        self.mqtt.publish(f"{PREFIX}/demo/gate-1/events/{etype}", json.dumps(payload), qos=1)

    def _run(self) -> None:
        while not self._stop.is_set():
            ev = self.cp.get_event(101, timeout=0.1)
            if ev is None:
                continue
            if ev["event"] == osdp.Event.CardRead:
                self.cp.submit_command(
                    101,
                    {
                        "command": osdp.Command.Output,
                        "output_no": 0,
                        "control_code": 5,
                        "timer_count": 15,
                    },
                )
                self._publish("access.granted", door="main-gate", method="card")
            elif ev["event"] == osdp.Event.Status and ev["type"] == osdp.StatusReportType.Input:
                self._publish("door.opened" if ev["report"][0] else "door.closed", door="main-gate")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.osdp.close()
        self.mqtt.loop_stop()
        self.mqtt.disconnect()


@pytest.fixture
def gateway(sim: Simulator, mosquitto: int) -> Iterator[FakeGateway]:
    gw = FakeGateway(sim, mosquitto)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


CARD_OK = """
name: card-ok
steps:
  - {at: 0.2, action: present-card, args: {reader: entry, card: 4242, facility: 10}}
  - {at: 1.0, action: open-door, args: {door: main-gate}}
duration: 2.5
expect:
  - {event: access.granted, fields: {door: main-gate, method: card}, within: [0.2, 1.0]}
  - {hardware: {door: main-gate, relay: true}, within: [0.2, 1.0]}
  - {event: door.opened, fields: {door: main-gate}, within: [1.0, 2.0]}
  - {absent: access.denied}
  - never_published: ["4242"]
"""

CARD_WRONG = """
name: card-wrong-expectation
steps:
  - {at: 0.2, action: present-card, args: {reader: entry, card: 4242, facility: 10}}
duration: 1.5
expect:
  - {event: access.denied, fields: {door: main-gate, reason: unknown_card}, within: 1.2}
  - {absent: access.granted}
  - {hardware: {door: main-gate, relay: true}, never: true}
"""


def _files(tmp_path: Path, **texts: str) -> list[Path]:
    out = []
    for name, text in texts.items():
        p = tmp_path / f"{name}.yaml"
        p.write_text(text, encoding="utf-8")
        out.append(p)
    return out


@pytest.mark.mosquitto
def test_runner_against_fake_gateway(
    tmp_path: Path, sim: Simulator, gateway: FakeGateway, mosquitto: int
) -> None:
    paths = _files(tmp_path, ok=CARD_OK, wrong=CARD_WRONG)
    results = run_scenarios(paths, sim, f"mqtt://127.0.0.1:{mosquitto}", PREFIX, settle_s=2.0)
    report = format_report(results)
    ok, wrong = results
    assert ok.status == "pass", report
    assert ok.time_to_decision_s is not None
    assert 0 <= ok.time_to_decision_s < 1.0
    assert wrong.status == "fail", report
    assert [c.ok for c in wrong.checks] == [False, False, False]
    assert "access.granted(door=main-gate, method=card)" in report
    assert "summary: 1 fail, 1 pass" in report


class FakeObserver:
    """Injected observer: events are appended by the test's fake gateway."""

    def __init__(self) -> None:
        self.events: list[Observed] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def emit(self, etype: str, **payload: Any) -> None:
        data = {"type": etype, **payload}
        self.events.append(
            Observed(
                time.monotonic(), f"p/demo/gate-1/events/{etype}", etype, data, json.dumps(data)
            )
        )


class _NoSim:
    def __init__(self) -> None:
        self.done: list[str] = []

    def do(self, action: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        self.done.append(action)
        return {"ok": True}

    def state(self) -> dict[str, Any]:
        return {
            "doors": {
                "main-gate": {
                    "relay": False,
                    "led": {"color": "off"},
                    "buzzer": {"on": False},
                    "text": "",
                    "door": {"open": False},
                }
            }
        }


def test_runner_statuses_with_injected_observer(tmp_path: Path) -> None:
    obs = FakeObserver()
    calls: list[tuple[str, dict[str, Any]]] = []

    async def harness(name: str, args: dict[str, Any]) -> None:
        calls.append((name, args))
        if name == "start_broker":  # the gateway flushes its outbox, in order
            obs.emit("access.granted", door="main-gate", method="card")
            obs.emit("access.granted", door="main-gate", method="pin")
            obs.emit("reader.online", reader="entry", leak="Colin_Powell")

    seq = """
name: ordered
fixtures: {people: [{ref: resident1, card: {number: 1}}]}
steps:
  - {at: 0.0, harness: stop_broker}
  - {at: 0.1, action: present-card, args: {reader: entry, card: 1}}
  - {at: 0.2, harness: start_broker}
duration: 0.5
expect:
  - sequence:
      - {event: access.granted, fields: {method: card}}
      - {event: access.granted, fields: {method: pin}}
  - {event: access.granted, count: 2, exactly: true}
  - {absent: access.denied}
  - never_published: ["4242"]
"""
    reversed_seq = (
        seq.replace("name: ordered", "name: reversed")
        .replace("{method: card}}\n", "{method: PIN}}\n")
        .replace("{method: pin}}\n", "{method: card}}\n")
        .replace("PIN", "pin")
    )
    leak = seq.replace("name: ordered", "name: leak").replace('["4242"]', '["Colin_Powell"]')
    tail = "steps: [{at: 0, action: open-door}]\nexpect: [{absent: x}]\n"
    pending = "name: later\npending: needs the daemon\n" + tail
    unsupported = "name: faces\nrequires: [face]\n" + tail
    broken = "name: broken\nsteps: [{at: 0, action: fly}]\nexpect: [{absent: x}]\n"
    paths = _files(tmp_path, a=seq, b=reversed_seq, c=leak, d=pending, e=unsupported, f=broken)
    sim = _NoSim()
    results = asyncio.run(
        run_scenarios_async(
            paths, sim, harness=harness, observer=obs, capabilities=["osdp"], settle_s=0.0
        )
    )
    status = {r.name: r.status for r in results}
    assert status == {
        "ordered": "pass",
        "reversed": "fail",
        "leak": "fail",
        "later": "pending",
        "faces": "unsupported",
        "f": "error",  # invalid file: named after the file
    }, format_report(results)
    assert "gateway lacks: face" in results[4].message
    assert "steps.0" in results[5].message
    assert calls[0][0] == "provision"
    assert calls[0][1]["people"][0]["ref"] == "resident1"
    assert [c[0] for c in calls[:3]] == ["provision", "stop_broker", "start_broker"]
    assert sim.done.count("present-card") == 3
    report = format_report(results)
    assert "[    PENDING] later" in report
    assert "pending: needs the daemon" in report


def test_harness_action_without_harness_is_an_error(tmp_path: Path) -> None:
    text = "name: h\nsteps: [{at: 0, harness: withdraw_consent}]\nexpect: [{absent: x}]\n"
    results = asyncio.run(
        run_scenarios_async(_files(tmp_path, h=text), _NoSim(), observer=FakeObserver(), settle_s=0)
    )
    assert results[0].status == "error"
    assert (
        "needs harness action(s) withdraw_consent but no harness was provided" in results[0].message
    )


def test_hardware_expectation_and_time_to_decision(tmp_path: Path) -> None:
    obs = FakeObserver()

    class Sim(_NoSim):
        relay = False

        def do(self, action: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
            if action == "type-pin":
                threading.Timer(0.15, self._grant).start()
            return super().do(action, args)

        def _grant(self) -> None:
            self.relay = True
            obs.emit("access.granted", door="main-gate", method="pin")

        def state(self) -> dict[str, Any]:
            st = super().state()
            st["doors"]["main-gate"]["relay"] = self.relay
            return st

    text = """
name: pin
steps: [{at: 0.1, action: type-pin, args: {reader: entry, pin: "1234"}}]
duration: 0.8
expect:
  - {hardware: {door: main-gate, relay: true}, within: [0.1, 0.7]}
  - {hardware: {door: main-gate, relay: true}, never: true, within: [0, 0.1]}
"""
    (res,) = asyncio.run(
        run_scenarios_async(_files(tmp_path, p=text), Sim(), observer=obs, settle_s=0)
    )
    assert res.status == "pass", format_report([res])
    assert res.time_to_decision_s is not None
    assert 0.1 <= res.time_to_decision_s < 0.5


def test_each_scenario_numbers_its_approaches_and_leaves_its_cameras_empty(
    tmp_path: Path,
) -> None:
    """Each scenario's approaches are numbered from 0 (its frames do not depend on what
    ran before); afterwards the cameras people approached are cleared and stay empty for
    ``clear_s`` before the next scenario (a new approach, never the last one's tail)."""
    calls: list[tuple[str, dict[str, Any], float]] = []

    class Sim(_NoSim):
        def do(self, action: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
            calls.append((action, dict(args or {}), time.monotonic()))
            return super().do(action, args)

    walk = "{at: 0.0, action: person-approaches, args: {camera: door-cam, person: r1}}"
    expect = "[{absent: access.denied}]"
    text = f"name: walk\nsteps: [{walk}, {walk}]\nduration: 0.1\nexpect: {expect}\n"
    files = _files(tmp_path, a=text, b=text.replace("name: walk", "name: walk2"))
    asyncio.run(run_scenarios_async(files, Sim(), observer=FakeObserver(), settle_s=0, clear_s=0.3))
    seeds = [a["seed"] for action, a, _ in calls if action == "person-approaches"]
    assert seeds == [0, 1, 0, 1]
    clears = [(a, t) for action, a, t in calls if action == "clear-camera"]
    assert [a for a, _ in clears] == [{"camera": "door-cam"}, {"camera": "door-cam"}]
    next_walk = next(t for action, _, t in calls[3:] if action == "person-approaches")
    assert next_walk - clears[0][1] >= 0.3


def test_a_door_step_waits_for_the_lock_to_click(tmp_path: Path) -> None:
    """``await_unlock_s``: the person pushes once the relay unlocks (a late grant on a busy
    machine no longer leaves them pushing a locked door), the windows after that step count
    from the push, and later steps keep their own times meanwhile. A lock that never
    clicks: pushed at the limit, with a note."""
    obs = FakeObserver()
    calls: list[tuple[str, bool, float]] = []

    class Sim(_NoSim):
        unlock_at = 0.0

        def do(self, action: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
            calls.append((action, self._relay(), time.monotonic()))
            if action == "open-door" and self._relay():
                obs.emit("door.opened", door="main-gate")
            return super().do(action, args)

        def _relay(self) -> bool:
            return 0 < self.unlock_at <= time.monotonic()

        def state(self) -> dict[str, Any]:
            st = super().state()
            st["doors"]["main-gate"]["relay"] = self._relay()
            return st

    text = """
name: late
steps:
  - {at: 0.1, action: open-door, args: {door: main-gate}, await_unlock_s: 1.5}
  - {at: 0.3, action: present-card, args: {reader: entry, card: 1}}
expect:
  - {event: door.opened, fields: {door: main-gate}, after_step: 0, within: [0, 1.0]}
"""
    late = Sim()
    late.unlock_at = time.monotonic() + 0.8  # the grant comes ~0.7 s after the step's time
    (res,) = asyncio.run(
        run_scenarios_async(_files(tmp_path, p=text), late, observer=obs, settle_s=0)
    )
    assert res.status == "pass", format_report([res])
    assert [(a, r) for a, r, _ in calls] == [("present-card", False), ("open-door", True)]
    pushed = calls[1][2]
    assert late.unlock_at <= pushed < late.unlock_at + 1.0

    calls.clear()
    (never,) = asyncio.run(
        run_scenarios_async(_files(tmp_path, q=text), Sim(), observer=obs, settle_s=0)
    )
    assert never.status == "fail", format_report([never])
    assert [(a, r) for a, r, _ in calls] == [("present-card", False), ("open-door", False)]
    assert "door main-gate still locked after 1.5 s; pushed" in format_report([never])


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ('{"card":4242,"x":1}', True),
        ('{"card":"4242"}', True),
        ("access/demo/gate-1/cards/4242/events", True),
        ('{"name":"Colin_Powell"}', True),
        ('{"image":"Colin_Powell.jpg"}', True),
        ('{"detail":"unknown card 4242."}', True),
        ('{"mac":"9fe4242ab0","ts":1796574242.5}', False),  # 4 digits inside other tokens
        ('{"id":"01a24be6-8cb8-7469-9c54-d28fa08be847","cpu":0.4242}', False),
        ('{"name":"Colin_Powell2"}', False),
    ],
)
def test_leak_is_a_whole_token(text: str, leaked: bool) -> None:
    """The leak check finds a private string as a value or a path part, never by chance
    inside a hex signature, a UUID or another number (that once failed a clean CI run)."""
    assert "4242" in text or "Colin_Powell" in text  # each case holds one as a substring
    hit = _leak(["4242", "Colin_Powell"], text)
    assert (hit is not None) is leaked, hit
