"""Kill the camera stream, the broker, the model files and the database in turn: card and
PIN still work."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from gateway.demo.run import DEFAULT_SCENARIOS, GATE, PREFIX, SITE, DemoStack
from gateway.mqtt.topics import Topics
from hw_sim.runner import format_report, run_scenarios_async
from tests.e2e.test_scenarios_e2e import _stack
from tests.mosquitto import Mosquitto

pytestmark = [pytest.mark.mosquitto, pytest.mark.models, pytest.mark.slow]


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as m:
        yield m


def test_card_and_pin_survive_camera_broker_and_model_loss(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """Kill the camera stream, the broker and the model files in turn: cards and PINs work."""
    card = DEFAULT_SCENARIOS / "resident-by-card.yaml"
    pin = DEFAULT_SCENARIOS / "visitor-by-pin.yaml"

    async def play(stack: DemoStack, path: Path) -> None:
        await stack.settle()
        (result,) = await run_scenarios_async(
            [path], stack.sim, stack.mqtt_url, PREFIX, harness=stack.harness
        )
        assert result.passed, format_report([result]) + "\n" + stack.daemon_log_tail(40)

    async def relay_opens_with_card(stack: DemoStack) -> None:
        await stack.settle()
        await asyncio.to_thread(
            stack.sim.do, "present-card", {"reader": "entry", "card": 31337, "facility": 10}
        )
        for _ in range(40):
            st = await asyncio.to_thread(stack.sim.state)
            if st["doors"]["main-gate"]["relay"]:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the relay did not open for a valid card\n" + stack.daemon_log_tail())

    async def main() -> None:
        stack = _stack(broker, tmp_path)
        # The daemon gets its own copy of the models, so that they can be taken away.
        await asyncio.to_thread(stack.start_sim)
        try:
            await asyncio.to_thread(stack.load_pipeline)
            own_models = tmp_path / "models"
            shutil.copytree(stack.model_dir, own_models)
            stack.model_dir = own_models
            stack.write_config()
            await stack.start_daemon()
            await play(stack, card)
            # 1. camera unplugged
            await asyncio.to_thread(stack.sim.do, "unplug-camera", {"camera": "main-cam"})
            await asyncio.sleep(2.0)
            await play(stack, card)
            await play(stack, pin)
            await asyncio.to_thread(stack.sim.do, "replug-camera", {"camera": "main-cam"})
            # 2. broker down: the relay still opens (events wait in the outbox)
            await asyncio.to_thread(broker.stop)
            await relay_opens_with_card(stack)
            await asyncio.to_thread(broker.start)
            # 3. model files gone: the daemon restarts with the face path disabled
            await stack.stop_daemon()
            for f in own_models.iterdir():
                f.write_bytes(b"corrupted")
            await stack.start_daemon()
            log = (tmp_path / "daemon.log").read_text()
            assert "face path disabled, PIN and card unaffected" in log
            await play(stack, card)
            await play(stack, pin)
            # 4. storage failure: another process holds the database's write lock, so every
            # write fails ("database is locked"); decisions go on from memory, events wait
            # in memory, and both are published / written back once the lock is gone.
            log_path = tmp_path / "daemon.log"
            offset = len(log_path.read_text())
            grants: list[bytes] = []

            async def collect() -> None:
                topic = Topics(PREFIX, SITE, GATE).event("access.granted")
                async with aiomqtt.Client("127.0.0.1", broker.port, identifier="deg-test") as c:
                    await c.subscribe(topic, qos=1)
                    async for msg in c.messages:
                        grants.append(bytes(msg.payload))

            collector = asyncio.create_task(collect())
            await asyncio.sleep(0.5)
            locker = sqlite3.connect(stack.state_dir / "state.db", isolation_level=None)
            try:
                locker.execute("BEGIN IMMEDIATE")
                await relay_opens_with_card(stack)
                for _ in range(100):
                    if "storage failure during" in log_path.read_text()[offset:]:
                        break
                    await asyncio.sleep(0.2)
                log = log_path.read_text()[offset:]
                assert "decisions continue, events are buffered in memory" in log, log[-3000:]
                # A second card while still locked: the lookup is not stuck behind writes.
                await stack.settle(clear=False)
                await relay_opens_with_card(stack)
            finally:
                locker.rollback()
                locker.close()
            try:
                for _ in range(100):
                    if len(grants) >= 2:
                        break
                    await asyncio.sleep(0.1)
                assert len(grants) >= 2, f"{len(grants)} grant event(s) published"
            finally:
                collector.cancel()
            await stack.settle()
            await play(stack, card)
            log = log_path.read_text()[offset:]
            assert "storage works again" in log, log[-3000:]
        finally:
            await stack.stop_daemon()
            await asyncio.to_thread(stack.stop_sim)

    asyncio.run(main())
