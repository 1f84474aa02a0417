"""The controller refuses nobody for a spoof suspected after that same person's grant
(one decision per person and approach), and still refuses a real one."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway import access
from gateway.gate.controller import AccessController, DoorRuntime


def _controller(events: list[Any]) -> AccessController:
    ctl = AccessController.__new__(AccessController)  # only what on_face_outcome touches
    ctl.site, ctl.gate = "site", "gate-1"
    ctl.doors = {
        "main": DoorRuntime("main", None, None, "cam", unlock_s=5.0, held_open_s=30.0)  # type: ignore[arg-type]
    }
    ctl.readers = {}
    ctl.emit_raw = events.append
    ctl.clock = lambda: 100.0
    return ctl


def test_a_spoof_after_the_same_persons_grant_refuses_nobody() -> None:
    events: list[Any] = []
    ctl = _controller(events)
    asyncio.run(ctl.on_face_outcome("cam", access.SpoofSuspected("cam", 99.0, after_grant=True)))
    assert events == []
    asyncio.run(ctl.on_face_outcome("cam", access.SpoofSuspected("cam", 99.5)))
    assert [(e.type, e.door, e.reason) for e in events] == [
        ("access.denied", "main", "spoof_suspected")
    ]
