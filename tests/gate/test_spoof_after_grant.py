"""The controller refuses nobody for a spoof suspected after that same person's grant
(one decision per person and approach) but reports it to the office; it still refuses a
real one, with the red light on the reader."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway import access
from gateway.gate.controller import AccessController, DoorRuntime


class _Reader:
    name = "entry"

    def __init__(self) -> None:
        self.shown: list[tuple[str, Any]] = []

    async def led(self, color: str, pattern: str, seconds: float) -> None:
        self.shown.append(("led", color))

    async def buzzer(self, pattern: str) -> None:
        self.shown.append(("buzzer", pattern))

    async def text(self, message: str) -> None:
        self.shown.append(("text", message))


def _controller(events: list[Any], reader: _Reader) -> AccessController:
    ctl = AccessController.__new__(AccessController)  # only what on_face_outcome touches
    ctl.site, ctl.gate = "site", "gate-1"
    runtime = DoorRuntime("main", None, "entry", "cam", unlock_s=5.0, held_open_s=30.0)  # type: ignore[arg-type]
    ctl.doors = {"main": runtime}
    ctl.readers = {"entry": reader}  # type: ignore[dict-item]
    ctl.emit_raw = events.append
    ctl.clock = lambda: 100.0
    return ctl


def test_a_spoof_after_the_same_persons_grant_refuses_nobody_and_is_reported() -> None:
    events: list[Any] = []
    reader = _Reader()
    ctl = _controller(events, reader)
    asyncio.run(ctl.on_face_outcome("cam", access.SpoofSuspected("cam", 99.0, after_grant=True)))
    assert [(e.type, e.door) for e in events] == [("door.liveness_failed_after_grant", "main")]
    assert "person" not in events[0].model_dump()  # anonymous: the door only
    assert reader.shown == []  # no red light for the resident walking in
    events.clear()
    asyncio.run(ctl.on_face_outcome("cam", access.SpoofSuspected("cam", 99.5)))
    assert [(e.type, e.door, e.reason) for e in events] == [
        ("access.denied", "main", "spoof_suspected")
    ]
    assert ("led", "red") in reader.shown
