"""Door faults against the real daemon process, the simulator and a real Mosquitto:
kill -9 / SIGTERM mid-unlock, a 30 s remote unlock then kill -9, a reader link cut
mid-unlock, one corrupted OSDP frame. After each: the door is locked in time (the reader's
own output timer relocks it), stays locked across the restart, and a valid card opens."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.harness import READER, fault_stack
from tests.mosquitto import Mosquitto

pytestmark = [pytest.mark.fault, pytest.mark.mosquitto, pytest.mark.slow, pytest.mark.timeout(90)]

UNLOCK_S = 5.0  # the demo config's main-gate unlock_seconds
LEASE_S = 5.0  # gateway.hardware.lock.LEASE_S: longest a release outlives its controller


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as m:
        yield m


def _run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_daemon_stopped_mid_unlock_relocks_in_time_and_after_restart(
    broker: Mosquitto, tmp_path: Path, sig: int
) -> None:
    async def main() -> None:
        async with fault_stack(broker, tmp_path) as fs:
            await fs.card_opens(within=1.5)
            granted = time.monotonic()
            await asyncio.sleep(0.5)
            offset = fs.log_size()
            killed = time.monotonic()
            await fs.kill(sig)
            await fs.wait_relay(False, within=UNLOCK_S + 1.0 - (time.monotonic() - granted))
            if sig == signal.SIGTERM:
                log = fs.log(offset)
                assert "cannot reach safe state" not in log, log
                assert "lock to shutdown state" in log, log
                # the permanent "locked" command reached the reader before the bus closed
                after = [c for t, c in fs.output_commands() if t >= killed]
                assert any(c["control_code"] == 1 for c in after), after
            # still locked 3 s later, through a restart, and locked once it runs
            await fs.relay_stays(False, 1.0)
            restart = asyncio.create_task(fs.start_daemon())
            while not restart.done():
                assert not await fs.relay(), "relay energised while the daemon restarts"
                await asyncio.sleep(0.05)
            await restart
            await fs.relay_stays(False, 1.0)
            # the lock was asserted at start, and a valid card still opens
            assert "cannot reach safe state" not in fs.log(offset)
            await fs.card_opens(within=1.5)

    _run(main())


def test_remote_unlock_30s_then_kill9_relocks_within_one_lease(
    broker: Mosquitto, tmp_path: Path
) -> None:
    async def main() -> None:
        async with fault_stack(broker, tmp_path) as fs:
            await fs.remote_unlock(30)
            await fs.wait_relay(True, within=2.0)
            await asyncio.sleep(6.0)  # past the first lease: renewed chunks keep it open
            assert await fs.relay(), "a 30 s unlock must hold beyond one lease\n" + fs.log_tail()
            codes = {c["control_code"] for _, c in fs.output_commands()}
            assert 2 not in codes, "an unlock must never be a permanent ON"
            killed = time.monotonic()
            await fs.kill(signal.SIGKILL)
            took = await fs.wait_relay(False, within=LEASE_S + 1.5)
            assert time.monotonic() - killed <= LEASE_S + 1.5, took
            await fs.relay_stays(False, 2.0)

    _run(main())


def test_reader_link_cut_mid_unlock_then_restored(broker: Mosquitto, tmp_path: Path) -> None:
    async def main() -> None:
        async with fault_stack(broker, tmp_path) as fs:
            await fs.card_opens(within=1.5)
            granted = time.monotonic()
            await fs.sim("cut-link", {"reader": READER})
            # the daemon's relock never arrives: the reader's own timer relocks
            await fs.wait_relay(False, within=UNLOCK_S + 1.0 - (time.monotonic() - granted))
            # long enough for libosdp to give the reader up (about 8 s of probing)
            await asyncio.sleep(10.0)
            assert not await fs.reader_online()
            offset = fs.log_size()
            restored = time.monotonic()
            await fs.sim("restore-link", {"reader": READER})
            await fs.wait_reader_online(READER, within=10.0, offset=offset)
            assert not await fs.relay()
            # the locked state was asserted to the returning reader
            for _ in range(40):
                if any(c["control_code"] == 1 for t, c in fs.output_commands() if t >= restored):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("no lock command after the reader came back\n" + fs.log())
            await fs.card_opens(within=1.5)

    _run(main())


def test_one_corrupted_frame_reader_back_within_seconds(broker: Mosquitto, tmp_path: Path) -> None:
    async def main() -> None:
        async with fault_stack(broker, tmp_path) as fs:
            offset = fs.log_size()
            t0 = time.monotonic()
            await fs.sim("corrupt-frames", {"reader": READER, "count": 1})
            for _ in range(50):
                if f"reader {READER}: offline" in fs.log(offset):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the corrupted frame was not noticed\n" + fs.log(offset))
            await fs.wait_reader_online(READER, within=8.0, offset=offset)
            await fs.card_opens(within=1.5)
            assert time.monotonic() - t0 < 10.0
            log = fs.log(offset)
            assert f"reader {READER}: offline; resetting its OSDP session" in log, log

    _run(main())
