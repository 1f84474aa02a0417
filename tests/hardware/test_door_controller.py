"""DoorController: state machine + fake relay + input events, injected clock."""

from __future__ import annotations

import asyncio

from gateway.hardware.door import DoorConfig, DoorEvent, DoorStateMachine
from gateway.hardware.door_controller import DoorController
from gateway.hardware.events import InputChanged, Tamper
from gateway.hardware.io import FakeRelay, LockSpec, LockType, Wiring
from gateway.hardware.lock import DoorLock


def test_controller_end_to_end() -> None:
    now = [0.0]
    seen: list[DoorEvent] = []
    relay = FakeRelay()
    ctl = DoorController(
        DoorStateMachine(DoorConfig("gate", unlock_s=5, held_open_s=10)),
        DoorLock("gate", relay, LockSpec(LockType.FAIL_SAFE, Wiring.NO, release_on_shutdown=True)),
        on_event=seen.append,
        clock=lambda: now[0],
    )

    async def main() -> None:
        await ctl.grant()
        assert relay.history == [False]  # maglock: release = cut power
        now[0] = 1.0
        await ctl.handle(InputChanged("r", 0, True))  # door opens
        now[0] = 12.0
        await ctl.tick()  # strike re-armed at 5 s, held-open at 11 s
        now[0] = 13.0
        await ctl.handle(InputChanged("r", 0, False))
        await ctl.handle(InputChanged("r", 1, True))  # exit button
        await ctl.handle(InputChanged("r", 7, True))  # not ours
        await ctl.handle(Tamper("r", True))
        await ctl.shutdown()

    asyncio.run(main())
    assert [e.kind for e in seen] == [
        "unlocked",
        "opened",
        "held_open",
        "closed",
        "held_open_cleared",
        "relocked",
        "exit_request",
        "unlocked",
        "tamper",
    ]
    assert relay.history == [False, True, False, False]  # last: fail-safe shutdown release


def test_run_loop_relocks_on_time() -> None:
    relay = FakeRelay()
    ctl = DoorController(
        DoorStateMachine(DoorConfig("gate", unlock_s=0.2)),
        DoorLock("gate", relay, LockSpec()),
    )

    async def main() -> None:
        task = asyncio.create_task(ctl.run(max_sleep_s=0.05))
        await asyncio.sleep(0.05)
        await ctl.grant()
        await asyncio.sleep(0.5)
        task.cancel()

    asyncio.run(main())
    # the locked state is asserted at start, then the timed release, then the relock
    assert relay.history == [False, True, False]
    assert [(lvl, round(s, 2)) for lvl, s in relay.pulses] == [(True, 0.2)]
