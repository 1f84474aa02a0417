"""Door physics rules."""

from __future__ import annotations

from hw_sim.door import Door


def _door() -> tuple[Door, list[bool]]:
    seen: list[bool] = []
    return Door("main-gate", pass_s=2.0, on_contact=seen.append), seen


def test_locked_door_does_not_open_when_pushed() -> None:
    door, seen = _door()
    r = door.push(now=0.0)
    assert not r.opened
    assert r.reason == "locked"
    assert seen == []
    assert door.state()["open"] is False


def test_unlocked_door_opens_on_push_and_closes_after_pass_time() -> None:
    door, seen = _door()
    door.set_relay(True)
    assert door.state()["open"] is False  # unlocking alone opens nothing
    assert door.push(now=10.0).opened
    assert seen == [True]
    door.tick(now=11.9)
    assert door.state()["open"] is True
    door.tick(now=12.1)
    assert seen == [True, False]
    assert door.state()["open"] is False


def test_door_stays_open_when_relocked_until_it_closes() -> None:
    door, seen = _door()
    door.set_relay(True)
    door.push(now=0.0)
    door.set_relay(False)  # lock engages while the leaf is open
    assert door.state()["open"] is True
    door.tick(now=2.5)
    assert seen == [True, False]


def test_held_door_stays_open_until_closed() -> None:
    door, seen = _door()
    door.set_relay(True)
    assert door.hold(now=0.0).opened
    door.set_relay(False)
    door.tick(now=100.0)
    assert door.state() == {"open": True, "unlocked": False, "forced": False, "held": True}
    door.close()
    assert seen == [True, False]


def test_hold_on_locked_door_fails() -> None:
    door, seen = _door()
    assert not door.hold(now=0.0).opened
    assert seen == []


def test_forced_door_opens_while_locked_and_is_marked_forced() -> None:
    door, seen = _door()
    r = door.force(now=0.0, seconds=3.0)
    assert r.opened
    assert r.reason == "forced"
    assert door.state()["forced"] is True
    assert door.state()["unlocked"] is False
    door.tick(now=3.1)
    assert seen == [True, False]
    assert door.state()["forced"] is False


def test_opening_an_unlocked_door_by_force_is_not_forced() -> None:
    door, _ = _door()
    door.set_relay(True)
    assert door.force(now=0.0).reason == "unlocked"
    assert door.state()["forced"] is False
