"""The scenario library end to end: the real daemon (own process), the simulator and a real
mosquitto started on a free loopback port. No scenario may be pending."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.demo.run import DEFAULT_SCENARIOS, PREFIX, DemoStack
from hw_sim.runner import format_report, run_scenarios_async
from hw_sim.scenario import load_scenario
from tests.mosquitto import Mosquitto

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
    with Mosquitto() as mosq:
        stack = _stack(mosq, workdir)
        stack.start_sim()
        try:
            stack.load_pipeline()
            stack.write_config()
            asyncio.run(stack.start_daemon())
            yield stack
        finally:
            asyncio.run(stack.stop_daemon())
            stack.stop_sim()


@pytest.mark.shared
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_passes_against_the_daemon(running: DemoStack, path: Path) -> None:
    async def play() -> None:
        await running.settle()
        (result,) = await run_scenarios_async(
            [path], running.sim, running.mqtt_url, PREFIX, harness=running.harness
        )
        assert result.passed, (
            format_report([result]) + "\n\ndaemon log:\n" + running.daemon_log_tail(40)
        )

    asyncio.run(play())
