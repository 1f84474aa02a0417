"""A relay that is slow to acknowledge delays only its own door (#review: decision lock).

The controller's decision lock is shared by every door; the relay's acknowledgement (up
to the OSDP timeout, 2 s) is awaited per door, after the decision, in a per-door queue
that keeps the commands in decision order.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from gateway.hardware.door import DoorConfig, DoorStateMachine
from gateway.hardware.door_controller import DoorController
from gateway.hardware.events import CardRead
from gateway.hardware.io import FakeRelay, LockSpec, LockType, Wiring
from gateway.hardware.lock import DoorLock

ACK_DELAY_S = 2.0  # door A's reader acknowledges only after the OSDP timeout


class SlowRelay(FakeRelay):
    """Records when each command was issued; acknowledges after ``delay`` seconds."""

    def __init__(self, name: str, delay: float = 0.0) -> None:
        super().__init__(name)
        self.delay = delay
        self.issued: list[tuple[str, bool, float]] = []

    async def set(self, energized: bool) -> None:
        self.issued.append(("set", energized, time.monotonic()))
        await asyncio.sleep(self.delay)
        await super().set(energized)

    async def pulse(self, energized: bool, seconds: float) -> None:
        self.issued.append(("pulse", energized, time.monotonic()))
        await asyncio.sleep(self.delay)
        await super().pulse(energized, seconds)

    def pulses_issued(self) -> list[float]:
        return [t for kind, _, t in self.issued if kind == "pulse"]


class QuietReader:
    """Stands in for a reader: accepts LED/buzzer/text."""

    def __getattr__(self, name: str) -> Any:
        async def ignore(*_a: Any, **_k: Any) -> None:
            return None

        return ignore


def _two_doors(minimal_config: Path) -> None:
    text = minimal_config.read_text()
    text = text.replace('relay = { kind = "osdp", output = 0 }', 'relay = { kind = "none" }')
    side = text[text.index("[readers.entry]") : text.index("[doors.main]")]
    door = text[text.index("[doors.main]") : text.index("[mqtt]")]
    port = side.split("127.0.0.1:")[1].split('"')[0]
    side = side.replace("entry", "side").replace(port, str(int(port) + 1))
    door = door.replace("main", "side").replace('"entry"', '"side"')
    minimal_config.write_text(text.replace("[mqtt]", side + door + "[mqtt]"))


def test_slow_relay_at_one_door_does_not_delay_a_card_at_another(minimal_config: Path) -> None:
    from tests.conftest import built_gateway

    _two_doors(minimal_config)

    async def main() -> None:
        async with built_gateway(minimal_config) as gw:
            ctl = gw.controller
            assert ctl is not None
            from gateway.privacy.people import add_person

            for card, name in ((4242, "Li Wei"), (4343, "Wang Fang")):
                pid = add_person(gw.db, name, unit="3-402")
                ctl.credentials.add_card(pid, 10, card, 0.0)
            relay_a = SlowRelay("main-relay", delay=ACK_DELAY_S)
            relay_b = SlowRelay("side-relay")
            ctl.doors["main"].controller.lock.relay = relay_a
            ctl.doors["side"].controller.lock.relay = relay_b
            ctl.readers["entry"] = QuietReader()  # type: ignore[assignment]
            ctl.readers["side"] = QuietReader()  # type: ignore[assignment]

            at_a = asyncio.create_task(
                ctl.on_reader_event("entry", CardRead("entry", 4242, 10, "H10301", 26))
            )
            for _ in range(200):  # door A's release is out, its acknowledgement pending
                if relay_a.pulses_issued():
                    break
                await asyncio.sleep(0.01)
            assert relay_a.pulses_issued(), "the card at door A must release door A"
            started = time.monotonic()
            at_b = asyncio.create_task(
                ctl.on_reader_event("side", CardRead("side", 4343, 10, "H10301", 26))
            )
            for _ in range(150):
                if relay_b.pulses_issued():
                    break
                await asyncio.sleep(0.01)
            assert relay_b.pulses_issued(), "the card at door B must release door B"
            took = relay_b.pulses_issued()[0] - started
            assert took < 0.5, f"door B waited {took:.2f} s for door A's relay"
            await asyncio.wait_for(asyncio.gather(at_a, at_b), 5.0)
            assert relay_a.energized, "door A released once acknowledged"
            assert relay_b.energized, "door B released"
            assert ctl.stats.grants == 2

    asyncio.run(main())


def test_a_later_lock_is_never_overtaken_by_an_earlier_release() -> None:
    now = [0.0]
    relay = SlowRelay("gate", delay=0.3)
    ctl = DoorController(
        DoorStateMachine(DoorConfig("gate", unlock_s=1, held_open_s=10)),
        DoorLock("gate", relay, LockSpec(LockType.FAIL_SECURE, Wiring.NO)),
        clock=lambda: now[0],
    )

    async def main() -> None:
        opening = ctl.grant_nowait()
        await asyncio.sleep(0.05)  # the release is out, not acknowledged yet
        now[0] = 2.0  # the window is over: the machine relocks
        await ctl.tick()
        assert opening.done(), "the lock waited for the earlier release"
        assert [(k, e) for k, e, _ in relay.issued] == [("pulse", True), ("set", False)]
        assert relay.history == [True, False]
        assert not relay.permanent

    asyncio.run(main())


def test_grant_nowait_returns_before_the_acknowledgement() -> None:
    relay = SlowRelay("gate", delay=0.5)
    ctl = DoorController(
        DoorStateMachine(DoorConfig("gate", unlock_s=5, held_open_s=10)),
        DoorLock("gate", relay, LockSpec(LockType.FAIL_SECURE, Wiring.NO)),
    )

    async def main() -> None:
        started = time.monotonic()
        opening = ctl.grant_nowait()
        assert time.monotonic() - started < 0.1
        assert ctl.machine.released, "the decision is taken at once"
        step = await DoorController.applied(opening)
        assert step is not None
        assert relay.energized

    asyncio.run(main())


def test_queued_commands_are_dropped_once_the_safe_state_began() -> None:
    relay = SlowRelay("gate", delay=0.2)
    ctl = DoorController(
        DoorStateMachine(DoorConfig("gate", unlock_s=5, held_open_s=10)),
        DoorLock("gate", relay, LockSpec(LockType.FAIL_SECURE, Wiring.NO)),
    )

    async def main() -> None:
        first = ctl.grant_nowait()
        await asyncio.sleep(0.05)
        second = ctl.grant_nowait(seconds=8)  # queued behind the first
        await ctl.shutdown()
        await DoorController.applied(first)
        await DoorController.applied(second)

    asyncio.run(main())
    assert [(k, e) for k, e, _ in relay.issued] == [("pulse", True), ("set", False)]
    assert relay.history[-1] is False
    assert not relay.permanent


def test_remote_unlock_does_not_wait_for_the_acknowledgement(minimal_config: Path) -> None:
    """The MQTT read loop is not held for the relay's acknowledgement (up to 2 s)."""
    from tests.conftest import built_gateway

    minimal_config.write_text(
        minimal_config.read_text().replace(
            'relay = { kind = "osdp", output = 0 }', 'relay = { kind = "none" }'
        )
    )

    async def main() -> None:
        async with built_gateway(minimal_config) as gw:
            ctl = gw.controller
            assert ctl is not None
            relay = SlowRelay("main-relay", delay=ACK_DELAY_S)
            ctl.doors["main"].controller.lock.relay = relay
            started = time.monotonic()
            await ctl.remote_unlock("main", 30)
            assert time.monotonic() - started < 0.5, "remote unlock waited for the relay"
            assert relay.pulses_issued(), "the release is on its way before the reply"
            for _ in range(40):
                if relay.energized:
                    break
                await asyncio.sleep(0.1)
            assert relay.energized, "door released once acknowledged"

    asyncio.run(main())
