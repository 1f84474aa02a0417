"""The demo stack (simulator, generated config, daemon process) for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from gateway.demo.run import DEFAULT_SCENARIOS, PREFIX, BrokerControl, DemoStack
from hw_sim.runner import ScenarioResult, run_scenarios_async


@contextlib.asynccontextmanager
async def demo_stack(
    broker_port: int, workdir: Path, broker_control: BrokerControl | None = None
) -> AsyncIterator[DemoStack]:
    """A started simulator and its stack on the broker at ``broker_port`` (stopped and
    started by ``broker_control`` if given); the daemon (if started) and the simulator are
    stopped on exit."""
    stack = DemoStack(
        mqtt_url=f"mqtt://127.0.0.1:{broker_port}",
        broker_control=broker_control,
        workdir=workdir,
        print_events=False,
    )
    await asyncio.to_thread(stack.start_sim)
    try:
        yield stack
    finally:
        await stack.stop_daemon()
        await asyncio.to_thread(stack.stop_sim)


async def play_one(stack: DemoStack, name: str) -> ScenarioResult:
    """Play the library's scenario ``name`` against the running stack."""
    (result,) = await run_scenarios_async(
        [DEFAULT_SCENARIOS / f"{name}.yaml"],
        stack.sim,
        stack.mqtt_url,
        PREFIX,
        harness=stack.harness,
    )
    return result
