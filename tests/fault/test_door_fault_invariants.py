"""Fault suite: the four invariants after each door fault. kill -9 and SIGTERM mid-unlock,
the reader's link cut mid-unlock, one corrupted OSDP frame, each followed by the same
checks as the storage and broker faults (:mod:`tests.fault.invariants`): the door relocks
within ``unlock_seconds + 1 s``, a valid card opens within 1 s, the card revoked before the
fault never opens, and every decision's event reaches the broker.

The hardware details of these faults (timed outputs, lock commands, PD reset) are asserted
in ``test_door_faults.py``; the link and frame faults use the simulator hooks of the
"door"/"fault" contract (``cut-link``, ``restore-link``, ``corrupt-frames``).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.gate import provisioned_gate, started_with_revocation
from tests.mosquitto import Mosquitto

pytestmark = [pytest.mark.fault, pytest.mark.mosquitto, pytest.mark.slow, pytest.mark.timeout(90)]

READER = "entry"
#: Every decision's event reaches the broker this long after the daemon is back.
DELIVER_WITHIN_S = 10.0
#: Long enough for the controller to give a silent reader up (libosdp probes ~8 s).
LINK_CUT_S = 10.0
#: The reader is back this long after its link returns or a bad frame.
READER_BACK_S = 10.0


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as m:
        yield m


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_daemon_stopped_mid_unlock(broker: Mosquitto, tmp_path: Path, sig: int) -> None:
    name = signal.Signals(sig).name

    async def main() -> None:
        async with provisioned_gate(broker, tmp_path) as stack:
            inv = await started_with_revocation(stack)
            async with inv:
                await inv.round("healthy", revoked=False)
                if await inv.open_with_valid_card("mid-unlock"):
                    await asyncio.sleep(0.5)
                await stack.kill(sig)
                await inv.door_locked(f"daemon stopped by {name}")
                await stack.start_daemon()
                inv.resync()
                await inv.round(f"restarted after {name}")
                await inv.no_event_lost(DELIVER_WITHIN_S)
            inv.assert_held()

    asyncio.run(main())


def test_reader_link_cut_mid_unlock(broker: Mosquitto, tmp_path: Path) -> None:
    async def main() -> None:
        async with provisioned_gate(broker, tmp_path) as stack:
            inv = await started_with_revocation(stack)
            async with inv:
                await inv.round("healthy", revoked=False)
                await inv.open_with_valid_card("mid-unlock")
                await asyncio.to_thread(stack.sim.do, "cut-link", {"reader": READER})
                await inv.door_locked("link cut")
                await asyncio.sleep(LINK_CUT_S)
                offset = stack.log_size()
                await asyncio.to_thread(stack.sim.do, "restore-link", {"reader": READER})
                if not await stack.wait_for_log(f"reader {READER}: online", offset, READER_BACK_S):
                    inv.notes.append(f"reader {READER} not logged online after restore-link")
                await inv.round("link restored")
                await inv.no_event_lost(DELIVER_WITHIN_S)
            inv.assert_held()

    asyncio.run(main())


def test_one_corrupted_frame(broker: Mosquitto, tmp_path: Path) -> None:
    async def main() -> None:
        async with provisioned_gate(broker, tmp_path) as stack:
            inv = await started_with_revocation(stack)
            async with inv:
                await inv.round("healthy", revoked=False)
                offset = stack.log_size()
                await asyncio.to_thread(
                    stack.sim.do, "corrupt-frames", {"reader": READER, "count": 1}
                )
                if await stack.wait_for_log(f"reader {READER}: offline", offset, 3.0):
                    back = await stack.wait_for_log(
                        f"reader {READER}: online", offset, READER_BACK_S
                    )
                    if not back:
                        inv.notes.append(f"reader {READER} not back {READER_BACK_S} s after")
                await inv.round("after one corrupted frame")
                await inv.no_event_lost(DELIVER_WITHIN_S)
            inv.assert_held()

    asyncio.run(main())
