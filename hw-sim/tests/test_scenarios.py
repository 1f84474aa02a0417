"""Scenario files: the library validates; bad files give errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hw_sim.cli import main
from hw_sim.scenario import Scenario, ScenarioError, SequenceExpect, load_scenario, scenario_paths

LIBRARY = Path(__file__).resolve().parents[1] / "scenarios"
REQUIRED = {
    "resident-by-face",
    "resident-by-card",
    "visitor-by-pin",
    "card-plus-pin-door",
    "unknown-face-then-pin",
    "photo-attack",
    "replay-attack",
    "no-capture-zone",
    "camera-unplugged-card-works",
    "broker-down-delivers-later",
    "pin-brute-force-lockout",
    "duress-pin",
    "tailgating",
    "forced-door",
    "held-open-door",
    "consent-withdrawn",
    "withdraw-while-gate-offline",
    "revoke-card-while-gate-offline",
    "delete-person",
}


@pytest.mark.parametrize("path", sorted(LIBRARY.glob("*.yaml")), ids=lambda p: p.stem)
def test_library_scenario_validates(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.name == path.stem
    assert sc.total_duration > max(s.at for s in sc.steps)
    assert sc.pending is None  # real expectations; the lead decides what is pending


def test_library_is_complete() -> None:
    assert {p.stem for p in scenario_paths([LIBRARY])} >= REQUIRED


def test_broker_scenario_orders_events() -> None:
    sc = load_scenario(LIBRARY / "broker-down-delivers-later.yaml")
    assert sc.harness_actions == ["stop_broker", "start_broker"]
    assert any(isinstance(e, SequenceExpect) for e in sc.expect)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "name: x\nsteps: [{at: 0, action: opne-door}]\nexpect: [{absent: x}]\n",
            "steps.0: Value error, unknown action 'opne-door'",
        ),
        (
            "name: x\nsteps: [{at: -1, action: open-door}]\nexpect: [{absent: x}]\n",
            "steps.0.at: Input should be greater than or equal to 0",
        ),
        (
            "name: x\nsteps: [{at: 0, action: open-door, harness: x}]\nexpect: [{absent: x}]\n",
            "exactly one of 'action'",
        ),
        (
            "name: x\nsteps: [{at: 0, action: open-door}]\nexpect: [{evnt: access.granted}]\n",
            "expect.0: an expectation needs one of",
        ),
        (
            (
                "name: x\nsteps: [{at: 0, action: open-door}]\n"
                "expect: [{event: access.granted, within: [5, 1]}]\n"
            ),
            "expect.0.event.within",
        ),
        (
            "name: x\nsteps: [{at: 0, action: open-door}]\nexpect: [{hardware: {relay: true}}]\n",
            "expect.0.hardware.hardware: Value error, hardware: name the door",
        ),
        (
            "name: x\nsteps: [{at: 0, action: open-door}]\nexpect: [{event: a.b, after_step: 3}]\n",
            "expect.0.after_step: there is no step 3",
        ),
        ("name: x\nsteps: []\nexpect: [{absent: x}]\n", "steps: List should have at least 1 item"),
        (
            "name: x\nsteps: [{at: 0, action: open-door}]\nexpect: [{absent: x}]\nbogus: 1\n",
            "bogus: Extra inputs are not permitted",
        ),
        (
            (
                "name: x\nfixtures: {people: [{ref: r, pin: 12}]}\n"
                "steps: [{at: 0, action: open-door}]\nexpect: [{absent: x}]\n"
            ),
            "fixtures.people.0.pin",
        ),
        (
            (
                "name: x\nsteps: [{at: 0, action: type-pin, await_unlock_s: 2}]\n"
                "expect: [{absent: x}]\n"
            ),
            "await_unlock_s: only for a door action",
        ),
        (
            (
                "name: x\nsteps: [{at: 0, action: open-door, await_unlock_s: 2}]\n"
                "expect: [{absent: x}]\n"
            ),
            "with args.door",
        ),
        ("- just\n- a list\n", "(top level)"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_scenarios_name_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    msg = str(err.value)
    assert str(path) in msg
    assert needle in msg


def test_cli_validate_reports_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path, "name: x\nsteps: [{at: 0, action: fly}]\nexpect: [{absent: x}]\n")
    assert main(["validate", str(LIBRARY / "forced-door.yaml"), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "ok      " in out
    assert f"INVALID {bad}: steps.0" in out


def test_duration_defaults_cover_windows() -> None:
    sc = Scenario.model_validate(
        {
            "name": "x",
            "steps": [{"at": 1, "action": "open-door", "args": {"door": "d"}}],
            "expect": [{"event": "door.opened", "within": [0, 9], "after_step": 0}],
        }
    )
    assert sc.total_duration == pytest.approx(11.0)


def test_duration_covers_a_step_waiting_for_the_lock() -> None:
    """A step that may wait for the door to unlock ends, at the latest, ``await_unlock_s``
    after its ``at``: its windows and the observation time count from there."""
    sc = Scenario.model_validate(
        {
            "name": "x",
            "steps": [{"at": 1, "action": "open-door", "args": {"door": "d"}, "await_unlock_s": 4}],
            "expect": [{"event": "door.opened", "within": [0, 6], "after_step": 0}],
        }
    )
    assert sc.total_duration == pytest.approx(12.0)  # at its latest 5 s, + 6 s, + 1 s
