"""What one applied batch leaves in the live gallery and the credential store: an erasure
anywhere in the batch wins, a face removed for an erasure that kept it comes back, and
roster cards and PINs are stored under the gate's own rotation layers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gateway.face.gallery import Gallery
from gateway.keys import Purpose, rekey_card
from gateway.services import credentials as creds_svc
from gateway.services.key_purposes import _layer_migration
from gateway.services.withdrawal import withdraw
from tests.roster.support import (
    Card,
    Gate,
    Office,
    make_gate,
    make_office,
    open_gate,
    traces,
)


@pytest.fixture
def site(tmp_path: Path) -> tuple[Office, Gate, dict[str, bytes]]:
    office = make_office(tmp_path)
    return office, make_gate(tmp_path, "north", office), {}


def test_an_erasure_followed_by_another_change_in_one_batch_still_erases(site) -> None:
    office, gate, broker = site
    pid = office.add("Bo", card=77)
    office.publish(broker)
    gate.sync(broker, office)
    assert len(gate.gallery.people()) == 1
    withdraw(office.db, office.vault, Gallery(), pid, "paper", vacuum=False)
    office.publish(broker)  # version 2: the erasure
    creds_svc.add_card(office.cdeps, pid, (10, 78), actor="t", channel="cli")
    office.publish(broker)  # version 3: a card added, not an erasure
    checked = gate.sync(broker, office)
    assert [c["erasure"] for c in checked.changes] == [True, False]  # one batch
    assert traces(gate.db)["templates"] == 0
    assert not gate.gallery.people()  # the live gallery forgot the face too
    assert gate.creds.identify_card(Card(10, 78)) is not None


def test_revoking_a_card_keeps_the_unchanged_face_in_the_live_gallery(site) -> None:
    office, gate, broker = site
    pid = office.add("Li Wei", card=4242)
    office.publish(broker)
    gate.sync(broker, office)
    rid = next(iter(gate.gallery.people()))
    creds_svc.revoke_card(office.cdeps, pid, actor="t", channel="cli")
    office.publish(broker)
    checked = gate.sync(broker, office)
    assert [c["erasure"] for c in checked.changes] == [True]
    assert gate.creds.identify_card(Card(10, 4242)) is None
    assert gate.gallery.people() == {rid}  # removed first, back after the commit


def test_a_snapshot_keeps_every_unchanged_face_in_the_live_gallery(site) -> None:
    office, gate, broker = site
    office.add("First", card=1)
    office.publish(broker)
    gate.sync(broker, office)
    for i in range(8):
        office.add(f"P{i}", card=100 + i)
        office.publish(broker, max_pending=3)
    checked = gate.sync(broker, office)
    assert checked.snapshot is not None
    assert len(gate.gallery.people()) == 9  # the first one's face too


def test_a_withdrawn_face_is_not_put_back_by_an_erasure(site) -> None:
    office, gate, broker = site
    pid = office.add("Gone", card=5)
    office.publish(broker)
    gate.sync(broker, office)
    withdraw(office.db, office.vault, Gallery(), pid, "paper", vacuum=False)
    creds_svc.revoke_card(office.cdeps, pid, actor="t", channel="cli")
    office.publish(broker)
    gate.sync(broker, office)
    assert not gate.gallery.people()


def _rotated(tmp_path: Path, office: Office, gate: Gate, what: str) -> tuple[Gate, bytes]:
    """The gate reopened after ``gateway keys rotate --what {what}`` on it: a layer over its
    stored card hashes or PIN indexes, carried from now on."""
    layer = os.urandom(32)
    _layer_migration(what, layer)(gate.db, None, None)  # type: ignore[arg-type]
    gate.db.conn.close()
    purpose = Purpose.CARD_REKEY if what == "card" else Purpose.PIN_REKEY
    device = gate.keys.device
    return open_gate(
        tmp_path, gate.name, office.trusted, device=device, carried={purpose: layer}
    ), layer


def test_a_roster_pin_is_found_after_a_pin_index_rotation_on_the_gate(site, tmp_path) -> None:
    office, gate, broker = site
    pid = office.add("Li")
    creds_svc.set_pin(office.cdeps, pid, "482913", actor="t", channel="cli")
    office.publish(broker)
    gate.sync(broker, office)
    now = time.time()
    assert gate.creds.identify_pin("482913", reader="r", now=now) is not None
    gate, _layer = _rotated(tmp_path, office, gate, "pin")
    assert gate.creds.identify_pin("482913", reader="r", now=now) is not None
    creds_svc.set_pin(office.cdeps, pid, "739154", actor="t", channel="cli")
    office.publish(broker)
    gate.sync(broker, office)
    gate.creds.refresh()
    assert gate.creds.identify_pin("739154", reader="r", now=time.time()) is not None
    assert gate.creds.identify_pin("482913", reader="r", now=time.time()) is None  # replaced


def test_a_roster_card_is_kept_as_is_after_a_card_rotation_on_the_gate(site, tmp_path) -> None:
    office, gate, broker = site
    pid = office.add("Li", card=4242)
    office.publish(broker)
    gate.sync(broker, office)
    gate, layer = _rotated(tmp_path, office, gate, "card")
    gate.sync(broker, office)  # the card key the office sent
    row_before = gate.db.execute("SELECT id, card_hmac FROM cards").fetchall()
    creds_svc.set_validity(
        office.cdeps, pid, actor="t", channel="cli", valid_until=time.time() + 10**8
    )
    creds_svc.add_card(office.cdeps, pid, (10, 4243), actor="t", channel="cli")
    office.publish(broker)
    gate.sync(broker, office)
    rows = gate.db.execute("SELECT id, card_hmac, revoked_at FROM cards ORDER BY id").fetchall()
    assert [tuple(r[:2]) for r in rows[:1]] == [tuple(r) for r in row_before]  # not re-added
    assert all(r[2] is None for r in rows)
    new = bytes(rows[1][1])
    office_hash = office.creds.card_hmac(10, 4243)
    assert new == rekey_card(office_hash, [layer])  # stored as the rotation stores rows
    gate.creds.refresh()
    assert gate.creds.identify_card(Card(10, 4242)) is not None
    assert gate.creds.identify_card(Card(10, 4243)) is not None
