"""The roster protocol without a broker: what the office publishes, what a gate applies,
and every refusal (the gate keeps its last good version, nothing stored is lost)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.mqtt.sign import generate, sign_envelope
from gateway.privacy.roster_crypto import RosterError, sign_manifest
from gateway.services import people as people_svc
from gateway.services import roster_gate, roster_office, roster_publish
from gateway.services.withdrawal import withdraw
from tests.roster.support import Card, Gate, Office, make_gate, make_office, traces


@pytest.fixture
def site(tmp_path: Path) -> tuple[Office, Gate, Gate, dict[str, bytes]]:
    office = make_office(tmp_path)
    a, b = make_gate(tmp_path, "north", office), make_gate(tmp_path, "south", office)
    return office, a, b, {}


def _audited(gate: Gate, action: str) -> list[str]:
    rows = gate.db.execute("SELECT details FROM audit WHERE action = ?", [action]).fetchall()
    return [r[0] for r in rows]


def test_gates_get_the_roster_without_names_and_with_opaque_per_gate_ids(site) -> None:
    office, a, b, broker = site
    pid = office.add("Li Wei", card=4242)
    assert office.publish(broker) == 2  # one change per gate
    a.sync(broker, office)
    b.sync(broker, office)
    ids_a = [r[0] for r in a.db.execute("SELECT id FROM people")]
    ids_b = [r[0] for r in b.db.execute("SELECT id FROM people")]
    assert len(ids_a) == len(ids_b) == 1
    assert pid not in ids_a + ids_b
    assert ids_a != ids_b
    row = a.db.execute("SELECT display_name, unit FROM people").fetchone()
    assert tuple(row) == ("", "")
    assert a.creds.identify_card(Card(10, 4242)) == ids_a[0]  # the office's card hash matches
    assert a.gallery.people() == {ids_a[0]}
    # nothing personal on the wire: no name, unit, office id, card number
    wire = b"".join(broker.values())
    for secret in (b"Li Wei", b"3-402", pid.encode(), b"4242"):
        assert secret not in wire
    st = roster_publish.status(office.db, "green-court")
    assert [(g.gate, g.behind) for g in st.gates] == [("north", 0), ("south", 0)]
    assert st.changes[-1].applied == ["north", "south"]


def test_withdrawal_erases_on_every_gate_and_the_office_sees_it_applied(site) -> None:
    office, a, b, broker = site
    pid = office.add("Zhang San", card=1)
    office.publish(broker)
    a.sync(broker, office)
    b.sync(broker, office)
    withdraw(office.db, office.vault, a.gallery.__class__(), pid, "paper", vacuum=False)
    office.publish(broker)
    assert office.db.execute("SELECT erasure FROM roster_changes ORDER BY rowid DESC").fetchone()[0]
    st = roster_publish.status(office.db, "green-court")
    assert st.changes[-1].erasure
    assert st.changes[-1].behind == ["north", "south"]
    a.sync(broker, office)
    assert traces(a.db)["face_keys"] == 0
    assert traces(a.db)["templates"] == 0
    assert not a.gallery.people()
    st = roster_publish.status(office.db, "green-court")
    assert st.changes[-1].applied == ["north"]
    assert st.changes[-1].behind == ["south"]
    # south never acknowledges: one alert, anonymized, raised once
    alerts = roster_publish.due_alerts(
        roster_office.OfficeDeps(
            office.db, office.vault, b"x" * 32, b"y" * 32, "green-court", clock=lambda: 1e12
        ),
        60,
    )
    assert [x["gate"] for x in alerts] == ["south"]
    assert pid not in json.dumps(alerts)
    b.sync(broker, office)
    assert traces(b.db)["templates"] == 0


def test_card_revocation_and_person_deletion_leave_no_trace(site) -> None:
    office, a, _b, broker = site
    keep = office.add("Keeper", card=7)
    gone = office.add("Leaver", card=8)
    office.publish(broker)
    a.sync(broker, office)
    rid_keep = a.creds.identify_card(Card(10, 7))
    assert rid_keep is not None
    assert a.creds.identify_card(Card(10, 8)) is not None
    from gateway.services import credentials as creds_svc

    creds_svc.revoke_card(office.cdeps, keep, actor="t", channel="cli")
    from gateway.face.gallery import Gallery

    people_svc.delete_person(
        people_svc.DeletionDeps(office.creds, office.vault, Gallery()),
        gone,
        actor="t",
        channel="cli",
    )
    office.publish(broker)
    a.sync(broker, office)
    assert a.creds.identify_card(Card(10, 7)) is None  # revoked
    assert a.creds.identify_card(Card(10, 8)) is None  # deleted
    t = traces(a.db)
    assert t["people"] == 1
    assert t["cards"] == 1
    assert t["face_keys"] == 1
    assert t["consents"] == 1


def test_scope_narrowed_to_one_gate_erases_the_face_elsewhere(site) -> None:
    from tests.roster.support import NOTICE

    office, a, b, broker = site
    pid = office.add("Narrow", card=9)
    office.publish(broker)
    a.sync(broker, office)
    b.sync(broker, office)
    roster_office.narrow_face_scope(office.db, NOTICE, pid, ["north"], actor="t")
    office.publish(broker)
    a.sync(broker, office)
    b.sync(broker, office)
    assert traces(a.db)["face_keys"] == 1
    assert a.gallery.people()
    assert traces(b.db)["face_keys"] == 0
    assert not b.gallery.people()
    assert b.creds.identify_card(Card(10, 9)) is not None  # the card still works at south


def test_a_gate_far_behind_gets_a_snapshot(site) -> None:
    office, a, _b, broker = site
    for i in range(12):
        office.add(f"P{i}", card=100 + i)
        office.publish(broker, max_pending=5)
    assert any(t.startswith("north/s/") for t in broker)
    a.sync(broker, office)
    assert traces(a.db)["people"] == 12
    assert len(a.gallery.people()) == 12


def _expect_refusal(gate: Gate, broker: dict[str, bytes], match: str) -> None:
    before = (roster_gate.state(gate.db, "green-court", gate.name), traces(gate.db))
    with pytest.raises(RosterError, match=match) as err:
        gate.sync(broker)
    roster_gate.reject(gate.deps, err.value)
    after = (roster_gate.state(gate.db, "green-court", gate.name), traces(gate.db))
    assert before == after  # the last good version, nothing lost
    assert _audited(gate, "roster.rejected")


def _first_chunk(broker: dict[str, bytes], gate: str) -> tuple[str, dict]:
    topic = next(t for t in sorted(broker) if t.startswith(f"{gate}/c/"))
    return topic, json.loads(broker[topic])


def test_forged_manifest_is_refused(site) -> None:
    office, a, _b, broker = site
    office.add("A", card=1)
    office.publish(broker)
    doc = json.loads(broker["north/manifest"])
    broker["north/manifest"] = json.dumps(sign_manifest(doc, generate())).encode()
    _expect_refusal(a, broker, "unknown key")
    doc["version"] += 1  # altered, same key id
    broker["north/manifest"] = json.dumps(doc).encode()
    _expect_refusal(a, broker, "does not verify")
    # a command envelope is not a manifest
    broker["north/manifest"] = json.dumps(
        sign_envelope("unlock", {}, office.signing, site="green-court", gate="north")
    ).encode()
    _expect_refusal(a, broker, "not this gate|does not verify|no version")


def test_older_version_replayed_is_refused(site) -> None:
    office, a, _b, broker = site
    office.add("A", card=1)
    office.publish(broker)
    old = dict(broker)
    a.sync(broker, office)
    office.add("B", card=2)
    office.publish(broker)
    a.sync(broker, office)
    _expect_refusal(a, old, "older than the applied")


def test_change_encrypted_for_another_gate_is_refused(site) -> None:
    office, a, _b, broker = site
    office.add("A", card=1)
    office.publish(broker)
    topic_a, doc_a = _first_chunk(broker, "north")
    _, doc_b = _first_chunk(broker, "south")
    doc_a["changes"] = doc_b["changes"]  # south's sealed change in north's chunk
    broker[topic_a] = json.dumps(doc_a).encode()
    _expect_refusal(a, broker, "another gate")


@pytest.mark.parametrize("damage", ["truncated", "duplicated", "reordered", "dropped"])
def test_damaged_stream_is_refused(site, damage: str) -> None:
    office, a, _b, broker = site
    for name in ("A", "B", "C"):
        office.add(name, card=ord(name))
    office.publish(broker)
    topic, doc = _first_chunk(broker, "north")
    items = doc["changes"]
    assert len(items) == 3
    if damage == "truncated":
        doc["changes"] = items[:2]
    elif damage == "duplicated":
        doc["changes"] = [items[0], items[1], items[1], items[2]]
    elif damage == "reordered":
        doc["changes"] = [items[0], items[2], items[1]]
    if damage == "dropped":
        del broker[topic]
        _expect_refusal(a, broker, "did not arrive")
        return
    broker[topic] = json.dumps(doc).encode()
    _expect_refusal(a, broker, "truncated|duplicated|reordered|missing")


def test_a_gate_provisioned_by_sync_person_keeps_its_people(site) -> None:
    office, a, _b, broker = site
    legacy = people_svc.add_person(a.db, people_svc.NewPerson("synced"), actor="t")
    office.add("A", card=1)
    office.publish(broker)
    a.sync(broker, office)
    assert a.db.execute("SELECT count(*) FROM people WHERE id = ?", [legacy]).fetchone()[0] == 1
    # a snapshot replaces the roster's people only
    office.add("B", card=2)
    office.publish(broker, max_pending=0)
    a.sync(broker, office)
    assert a.db.execute("SELECT count(*) FROM people WHERE id = ?", [legacy]).fetchone()[0] == 1
    assert traces(a.db)["roster_members"] == 2
