"""Door state machine: every transition and alarm, with an injected clock."""

from __future__ import annotations

from gateway.hardware.door import DoorConfig, DoorState, DoorStateMachine, LockCommand, Step


def machine(**kw: float) -> DoorStateMachine:
    return DoorStateMachine(DoorConfig("gate", unlock_s=5, held_open_s=30, **kw))


def state(m: DoorStateMachine) -> DoorState:
    return m.state


def kinds(step: Step) -> list[str]:
    return [e.kind for e in step.events]


def test_grant_open_close_relock() -> None:
    m = machine()
    s = m.grant(100.0)
    assert kinds(s) == ["unlocked"]
    assert s.commands == (LockCommand("gate", True),)
    assert s.events[0].door == "gate"
    assert s.events[0].ts == 100.0
    assert state(m) is DoorState.UNLOCKED
    s = m.door_opened(102.0)
    assert kinds(s) == ["opened"]
    assert not s.commands
    assert state(m) is DoorState.OPEN
    s = m.door_closed(104.0)
    assert kinds(s) == ["closed", "relocked"]
    assert s.commands == (LockCommand("gate", False),)
    assert state(m) is DoorState.LOCKED
    assert not m.released


def test_unlock_window_expires_without_opening() -> None:
    m = machine()
    m.grant(0.0)
    assert m.tick(4.99) == Step()
    s = m.tick(5.0)
    assert kinds(s) == ["relocked"]
    assert s.events[0].reason == "timeout"
    assert s.commands == (LockCommand("gate", False),)
    assert state(m) is DoorState.LOCKED


def test_second_grant_extends_window() -> None:
    m = machine()
    m.grant(0.0)
    s = m.grant(4.0)
    assert s == Step()  # no duplicate event or command
    assert m.tick(8.0) == Step()
    assert kinds(m.tick(9.0)) == ["relocked"]


def test_grant_for_given_seconds() -> None:
    m = machine()
    m.grant(0.0, reason="remote", seconds=12.0)
    assert m.next_deadline() == 12.0
    assert m.tick(11.0) == Step()
    assert kinds(m.tick(12.0)) == ["relocked"]


def test_forced_open_alarm_and_clear() -> None:
    m = machine()
    s = m.door_opened(10.0)
    assert kinds(s) == ["forced_open"]
    assert s.events[0].alarm
    assert state(m) is DoorState.FORCED_OPEN
    s = m.door_closed(12.0)
    assert kinds(s) == ["closed", "forced_open_cleared", "relocked"]
    assert not s.commands  # the lock never moved
    assert state(m) is DoorState.LOCKED


def test_exit_button_unlocks_and_opening_is_not_forced() -> None:
    m = machine()
    s = m.exit_request(0.0)
    assert kinds(s) == ["exit_request", "unlocked"]
    assert s.commands == (LockCommand("gate", True),)
    s = m.door_opened(1.0)
    assert kinds(s) == ["opened"]
    assert not any(e.alarm for e in s.events)


def test_exit_unlock_time_can_differ() -> None:
    m = DoorStateMachine(DoorConfig("gate", unlock_s=5, exit_unlock_s=2))
    m.exit_request(0.0)
    assert kinds(m.tick(2.0)) == ["relocked"]


def test_held_open_alarm_then_cleared_on_close() -> None:
    m = machine()
    m.grant(0.0)
    m.door_opened(1.0)
    # unlock window ends while open: strike re-armed, no state change
    s = m.tick(5.0)
    assert s.events == ()
    assert s.commands == (LockCommand("gate", False),)
    assert m.tick(30.9) == Step()
    s = m.tick(31.0)
    assert kinds(s) == ["held_open"]
    assert s.events[0].alarm
    assert state(m) is DoorState.HELD_OPEN
    assert m.tick(40.0) == Step()  # alarm raised once
    s = m.door_closed(41.0)
    assert kinds(s) == ["closed", "held_open_cleared", "relocked"]
    assert not s.commands  # already secured at t=5
    assert state(m) is DoorState.LOCKED


def test_grant_while_open_keeps_lock_released() -> None:
    m = machine()
    m.grant(0.0)
    m.door_opened(1.0)
    m.tick(5.0)  # strike re-armed
    s = m.grant(6.0)
    assert s.commands == (LockCommand("gate", True),)
    assert state(m) is DoorState.OPEN


def test_spurious_inputs_are_ignored() -> None:
    m = machine()
    assert m.door_closed(0.0) == Step()
    m.grant(1.0)
    m.door_opened(2.0)
    assert m.door_opened(2.1) == Step()


def test_next_deadline() -> None:
    m = machine()
    assert m.next_deadline() is None
    m.grant(10.0)
    assert m.next_deadline() == 15.0
    m.door_opened(11.0)
    assert m.next_deadline() == 15.0
    m.tick(15.0)
    assert m.next_deadline() == 41.0
