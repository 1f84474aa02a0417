"""The demo's compound scenarios (issue 15), statically: every harness step of the library
is one the demo carries out, each roster scenario enrols at the office, ends converged and
checks the wire; the office stays off for scenarios without office people."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.demo.roster_office import STEPS, DemoOffice
from gateway.demo.run import DEFAULT_SCENARIOS
from hw_sim.scenario import NeverPublishedExpect, load_scenario

ROSTER = ("withdraw-while-gate-offline", "revoke-card-while-gate-offline", "delete-person")
DEMO_STEPS = {"stop_broker", "start_broker", "withdraw_consent", "sync_person", "set_pin"}


def test_every_library_harness_step_is_carried_out_by_the_demo() -> None:
    for path in sorted(DEFAULT_SCENARIOS.glob("*.yaml")):
        unknown = set(load_scenario(path).harness_actions) - DEMO_STEPS - set(STEPS)
        assert not unknown, f"{path.name}: harness steps the demo does not know: {unknown}"


@pytest.mark.parametrize("name", ROSTER)
def test_roster_scenario_enrols_at_the_office_and_ends_converged(name: str) -> None:
    sc = load_scenario(DEFAULT_SCENARIOS / f"{name}.yaml")
    people = sc.fixtures.people
    assert people
    assert all(p.office for p in people)
    assert "wait_converged" in sc.harness_actions
    assert any(e.event == "ack" for e in sc.expect if hasattr(e, "event"))
    secrets = {
        s for e in sc.expect if isinstance(e, NeverPublishedExpect) for s in e.never_published
    }
    for p in people:
        assert f"{{{p.ref}}}" in secrets
        assert p.card is None or str(p.card.number) in secrets
        assert p.pin is None or p.pin in secrets
    if name != "delete-person":  # the gate is offline while the office changes the person
        steps = sc.harness_actions
        assert steps.index("gate_offline") < steps.index("gate_online")
    if "face" not in sc.requires:  # runs without a face corpus: no face step
        assert all(s.action != "person-approaches" for s in sc.steps)


def test_no_office_people_no_office(tmp_path: Path) -> None:
    office = DemoOffice(SimpleNamespace(workdir=tmp_path))
    fixtures = {"people": [{"ref": "resident1", "name": "A", "office": False}]}
    assert asyncio.run(office.provision(fixtures)) == fixtures
    assert not office.running
    office.stop()  # nothing started: nothing to stop


def test_a_step_on_someone_not_at_the_office_fails_naming_them(tmp_path: Path) -> None:
    corpus = SimpleNamespace(resolve=lambda ref: f"name-of-{ref}")
    office = DemoOffice(SimpleNamespace(workdir=tmp_path, sim=SimpleNamespace(corpus=corpus)))
    with pytest.raises(RuntimeError, match="resident9 is not on the office's roster"):
        asyncio.run(office.harness("office_withdraw", {"person": "resident9"}))


def test_embedded_broker_walks_a_snapshot_of_its_subscriptions() -> None:
    from gateway.demo.broker import _Snapshots

    table = _Snapshots({"a/#": [], "b/#": []})
    for topic in table:  # amqtt awaits inside such walks while others subscribe or leave
        table[f"{topic}/new"] = []
        del table[topic]
    for topic, _subs in table.items():
        table.pop(topic)
    assert table == {}
