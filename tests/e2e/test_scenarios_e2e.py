"""The scenario library end to end: the real daemon (own process), the simulator and a real
mosquitto started on a free loopback port. No scenario may be pending.

Everything on the broker during the run is captured (a subscriber on ``#``): after each
scenario, and once more at the end, no person id, name, unit, card number or PIN of anyone
the scenarios provisioned may appear in it (issue #15). Before the library, every key is
rotated as ``gateway demo --rotate-keys`` does (issue #20): every scenario passes after it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.demo.roster_office import office_unit
from gateway.demo.rotation import RESIDENT, rotate_every_key
from gateway.demo.run import DEFAULT_SCENARIOS, PREFIX, DemoStack, demo_unit
from hw_sim.runner import format_report, run_scenarios_async
from hw_sim.scenario import load_scenario
from tests.mosquitto import Mosquitto
from tests.support.mqtt_capture import MqttCapture, Secrets

pytestmark = [pytest.mark.mosquitto, pytest.mark.models, pytest.mark.slow]

SCENARIOS = sorted(DEFAULT_SCENARIOS.glob("*.yaml"))


def _stack(broker: Mosquitto, workdir: Path) -> DemoStack:
    async def control(step: str) -> None:
        if step == "stop_broker":
            await asyncio.to_thread(broker.stop)
        else:
            await asyncio.to_thread(broker.start)

    return DemoStack(
        mqtt_url=f"mqtt://127.0.0.1:{broker.port}",
        broker_control=control,
        workdir=workdir,
        print_events=False,
    )


def test_no_scenario_is_marked_pending() -> None:
    assert len(SCENARIOS) >= 16
    for path in SCENARIOS:
        sc = load_scenario(path)
        assert not getattr(sc, "pending", None), f"{path.name} is pending: {sc.pending}"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    """One broker, simulator and daemon for the whole scenario library."""
    from tests.conftest import shared_available

    if not shared_available():
        pytest.skip("needs ../shared (real faces and the anti-spoofing models)")
    workdir = tmp_path_factory.mktemp("scenarios")
    with Mosquitto() as mosq, MqttCapture("127.0.0.1", mosq.port) as cap:
        stack = _stack(mosq, workdir)
        stack.capture = cap  # type: ignore[attr-defined]
        stack.wire_secrets = Secrets()  # type: ignore[attr-defined]
        stack.start_sim()
        try:
            stack.load_pipeline()
            stack.write_config()
            asyncio.run(stack.start_daemon())
            # Issue #20: every key rotated (each rotation checks the old key material is gone
            # from the database, its WAL and the key directories) before the library plays.
            resident = {**RESIDENT, "name": stack.sim.corpus.resolve("resident1")}
            _note(stack.wire_secrets, resident)  # type: ignore[attr-defined]
            rotated = asyncio.run(rotate_every_key(stack, {}))
            assert rotated, "no key rotation ran"
            assert all(r.passed for r in rotated), format_report(rotated)
            yield stack
        finally:
            asyncio.run(stack.stop_daemon())
            stack.office.stop()  # the roster office, when a scenario started it
            stack.stop_sim()
    assert _leaks(stack) == [], "identities on the wire during the scenario suite"


def _recording(stack: DemoStack) -> Any:
    """The stack's harness, noting every provisioned name, card number and PIN."""
    found: Secrets = stack.wire_secrets  # type: ignore[attr-defined]

    async def harness(name: str, args: dict[str, Any]) -> None:
        if name == "provision":
            for person in args.get("people", []):
                _note(found, person)
            found.numbers.update(str(v["pin"]) for v in args.get("visitor_pins", []))
        await stack.harness(name, args)

    return harness


def _note(found: Secrets, person: dict[str, Any]) -> None:
    """A provisioned person's name, card number and PINs: never on the wire."""
    found.names.add(person["name"])
    if person.get("card"):
        found.numbers.add(str(person["card"]["number"]))
    found.numbers.update(str(person[k]) for k in ("pin", "duress_pin") if person.get(k))


def _leaks(stack: DemoStack) -> list[str]:
    found: Secrets = stack.wire_secrets  # type: ignore[attr-defined]
    found.ids.update(stack._people.values())
    found.units.update(demo_unit(n) for n in range(len(stack._people) + 1))
    found.ids.update(stack.office.kept.values())  # the roster office's people (issue 15)
    found.units.update(office_unit(n) for n in range(len(stack.office.kept) + 1))
    cap: MqttCapture = stack.capture  # type: ignore[attr-defined]
    return cap.leaks(found)


@pytest.mark.shared
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_passes_against_the_daemon(running: DemoStack, path: Path) -> None:
    if "landmarks" in load_scenario(path).requires and running.landmarks_error is not None:
        pytest.skip(f"needs the dense landmark model: {running.landmarks_error}")

    async def play() -> None:
        await running.settle()
        (result,) = await run_scenarios_async(
            [path], running.sim, running.mqtt_url, PREFIX, harness=_recording(running)
        )
        assert result.passed, (
            format_report([result]) + "\n\ndaemon log:\n" + running.daemon_log_tail(40)
        )

    asyncio.run(play())
    assert _leaks(running) == [], f"{path.stem}: identities on the wire"
