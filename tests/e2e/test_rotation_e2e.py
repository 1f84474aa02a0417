"""Issue #20's acceptance with the real daemon: the demo gate's device key sealed (bound to
PCR 7) to a software TPM; resident-by-face, resident-by-card and visitor-by-pin pass; they
pass again with the same stored credentials and templates after ``gateway keys rotate`` of
every key, and after a signed ``rotate_keys`` command the daemon carried out by restarting
itself in place."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.demo.rotation import ORDER, adopt_gates_key
from gateway.demo.run import DEFAULT_SCENARIOS, PREFIX, DemoStack
from hw_sim.runner import format_report, run_scenarios_async
from tests.keys.rotation_checks import rotate, seal_to
from tests.mosquitto import Mosquitto
from tests.support.demo import demo_stack
from tests.support.swtpm import SoftTpm, running_swtpm, skip_reason

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.models,
    pytest.mark.slow,
    pytest.mark.shared,
    pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason())),
]

SCENARIOS = [DEFAULT_SCENARIOS / f"{n}.yaml" for n in ("resident-by-face", "resident-by-card")]
SCENARIOS.append(DEFAULT_SCENARIOS / "visitor-by-pin.yaml")
ROTATIONS = ORDER  # every key, as gateway demo --rotate-keys rotates them
RESTART_LIMIT_S = 90.0


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as m:
        yield m


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[SoftTpm]:
    with running_swtpm(tmp_path / "swtpm") as tpm:
        yield tpm


async def _play(stack: DemoStack) -> None:
    results = await run_scenarios_async(
        SCENARIOS, stack.sim, stack.mqtt_url, PREFIX, harness=stack.harness
    )
    assert all(r.passed for r in results), format_report(results)


def _starts(stack: DemoStack) -> int:
    return (stack.workdir / "daemon.log").read_text(errors="replace").count("running for site")


async def _restarted(stack: DemoStack, starts: int) -> None:
    """Wait for the daemon's restart in place (the same process, a new start logged)."""
    deadline = asyncio.get_running_loop().time() + RESTART_LIMIT_S
    while _starts(stack) <= starts:
        assert stack.proc is not None
        assert stack.proc.poll() is None, stack.daemon_log_tail()
        assert asyncio.get_running_loop().time() < deadline, stack.daemon_log_tail()
        await asyncio.sleep(0.3)
    await stack.settle()


def test_scenarios_pass_on_a_tpm_sealed_gate_after_every_rotation(
    broker: Mosquitto, swtpm: SoftTpm, tmp_path: Path
) -> None:
    async def main() -> None:
        async with demo_stack(broker.port, tmp_path) as stack:
            await asyncio.to_thread(stack.load_pipeline)
            config = stack.write_config()
            seal_to(swtpm, tmp_path, config, stack.keys["device"], pcrs="[7]")
            await stack.start_daemon()
            await _play(stack)

            await stack.stop_daemon()
            adopt_gates_key(stack)  # written by the transform rotation
            for what in ROTATIONS:
                rotate(config, what)
            await stack.start_daemon()
            await _play(stack)

            starts = _starts(stack)
            answer = (await stack.command("rotate_keys", {"what": "card"}))["result"]
            assert answer["what"] == "card"
            assert answer["restarting"] is True
            await _restarted(stack, starts)
            await _play(stack)
            log = (tmp_path / "daemon.log").read_text(errors="replace")
            assert "AUDIT CHAIN BROKEN" not in log  # the head published before the rotations

    asyncio.run(main())
