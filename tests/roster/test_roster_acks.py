"""Signed acknowledgements: the office believes a gate converged only on an ack signed by
that gate's registered Ed25519 key, for this site and gate, at a chain head the office
issued; anything else is refused and audited, the last genuine ack is kept, and a gate
registered before acks were signed gets a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.mqtt.sign import generate
from gateway.privacy.roster_crypto import (
    ack_public_b64,
    canonical,
    gate_ack_private,
    gate_private,
    public_b64,
    sign_manifest,
)
from gateway.services import roster_gate, roster_office, roster_publish
from tests.roster.support import SITE, Gate, Office, make_gate, make_office

NOW = 2e10


@pytest.fixture
def site(tmp_path: Path) -> tuple[Office, Gate, Gate, dict[str, bytes]]:
    office = make_office(tmp_path)
    north, south = make_gate(tmp_path, "north", office), make_gate(tmp_path, "south", office)
    broker: dict[str, bytes] = {}
    office.add("Li Wei", card=7)
    office.publish(broker)
    north.sync(broker)
    south.sync(broker)
    return office, north, south, broker


def _acked(office: Office, gate: str) -> int:
    return roster_office.acked(office.db, gate)


def _refusals(office: Office) -> list[str]:
    rows = office.db.execute("SELECT details FROM audit WHERE action = 'roster.ack_refused'")
    return [json.loads(r[0])["error"] for r in rows]


def _record(office: Office, gate: str, payload: bytes) -> bool:
    return roster_office.record_ack(office.db, SITE, gate, payload, NOW)


def test_a_genuine_signed_ack_is_recorded_and_carries_no_identity(site) -> None:
    office, north, _south, _ = site
    ack = roster_gate.ack_payload(north.deps)
    assert _record(office, "north", ack) is True
    assert _acked(office, "north") == 1
    doc = json.loads(ack)
    assert set(doc) == {"format", "site", "gate", "version", "head", "applied_at", "key_id", "sig"}
    assert _refusals(office) == []


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ("unsigned", "unknown key"),  # today's format: no signature at all
        ("other_key", "unknown key"),  # signed by a key the office does not hold
        ("altered", "does not verify"),  # the gate's signature over another version
        ("other_gate", "unknown key"),  # south's genuine ack put on north's topic
        ("wrong_head", "never issued"),  # signed by the gate, but a chain the office never made
        ("not_json", "not JSON"),
    ],
)
def test_a_forged_or_unauthenticated_ack_is_refused_and_audited(
    site, forge: str, reason: str
) -> None:
    office, north, south, _ = site
    assert _record(office, "north", roster_gate.ack_payload(north.deps))
    genuine = json.loads(roster_gate.ack_payload(north.deps))
    body = {k: v for k, v in genuine.items() if k not in ("sig", "key_id")}
    payload = {
        "unsigned": canonical({"version": 99, "head": "0" * 64, "applied_at": NOW}),
        "other_key": canonical(sign_manifest({**body, "version": 99}, generate())),
        "altered": canonical({**genuine, "version": 99}),
        "other_gate": roster_gate.ack_payload(south.deps),
        "wrong_head": canonical(
            sign_manifest({**body, "head": "ab" * 32}, gate_ack_private(north.deps.device_root))
        ),
        "not_json": b"{version: 99",
    }[forge]
    with pytest.raises(roster_office.AckRefusedError, match=reason):
        _record(office, "north", payload)
    assert _refusals(office)
    assert reason in _refusals(office)[-1]
    row = office.db.execute("SELECT version, head FROM roster_acks WHERE gate = 'north'")
    assert tuple(row.fetchone()) == (genuine["version"], genuine["head"])  # the genuine one kept


def test_a_forged_ack_cannot_claim_a_withdrawal_was_applied(site) -> None:
    office, north, _south, broker = site
    assert _record(office, "north", roster_gate.ack_payload(north.deps))
    pid = office.db.execute("SELECT id FROM people").fetchone()[0]
    from gateway.face.gallery import Gallery
    from gateway.services.withdrawal import withdraw

    withdraw(office.db, office.vault, Gallery(), pid, "paper", vacuum=False)
    office.publish(broker)
    version, hd = roster_office.head(office.db, SITE, "north")
    # an attacker knows the new version and head (the manifest is public) but not the key
    forged = {"format": "ag-roster-v1", "site": SITE, "gate": "north", "version": version}
    forged |= {"head": hd, "applied_at": NOW}
    with pytest.raises(roster_office.AckRefusedError):
        _record(office, "north", canonical(sign_manifest(forged, generate())))
    st = {g.gate: g for g in roster_publish.status(office.db, SITE).gates}
    assert st["north"].behind == 1  # not believed converged
    north.sync(broker)
    assert _record(office, "north", roster_gate.ack_payload(north.deps))
    assert roster_publish.status(office.db, SITE).gates[0].behind == 0


def test_an_older_genuine_ack_replayed_only_makes_the_gate_look_behind(site) -> None:
    office, north, _south, broker = site
    old = roster_gate.ack_payload(north.deps)
    office.add("Zhang San", card=8)
    office.publish(broker)
    north.sync(broker)
    assert _record(office, "north", roster_gate.ack_payload(north.deps))
    assert _record(office, "north", old)  # genuine: kept (a gate restored from a backup)
    st = {g.gate: g for g in roster_publish.status(office.db, SITE).gates}
    assert (st["north"].acked, st["north"].behind) == (1, 1)  # never more converged


def test_a_gate_registered_before_signed_acks_gets_a_clear_message(site, caplog) -> None:
    office, north, _south, _ = site
    office.db.execute("UPDATE roster_gates SET ack_key = NULL WHERE name = 'north'")  # upgraded
    with pytest.raises(roster_office.AckRefusedError, match="no acknowledgement key registered"):
        _record(office, "north", roster_gate.ack_payload(north.deps))
    assert "gateway roster add-gate north" in _refusals(office)[-1]
    st = {g.gate: g for g in roster_publish.status(office.db, SITE).gates}
    assert st["north"].error is not None
    assert "no ack key registered" in st["north"].error
    assert st["south"].error is None
    # registering the same X25519 key again without the ack key: still a warning
    x_key = public_b64(gate_private(north.deps.device_root))
    roster_office.add_gate(office.db, "north", x_key, actor="t")
    assert "no acknowledgement key registered" in caplog.text
    # with it: acks are believed again; registering later without it keeps it
    ack_key = ack_public_b64(gate_ack_private(north.deps.device_root))
    assert roster_office.add_gate(office.db, "north", x_key, actor="t", ack_key=ack_key) is False
    roster_office.add_gate(office.db, "north", x_key, actor="t")
    assert _record(office, "north", roster_gate.ack_payload(north.deps))
    st = {g.gate: g for g in roster_publish.status(office.db, SITE).gates}
    assert st["north"].error is None
    assert st["north"].behind == 0


def test_a_bad_ack_key_is_refused_at_registration(site) -> None:
    office, north, _south, _ = site
    x_key = public_b64(gate_private(north.deps.device_root))
    with pytest.raises(roster_office.RosterError, match="acknowledgement key is 32 bytes"):
        roster_office.add_gate(office.db, "west", x_key, actor="t", ack_key="AAAA")
    assert "west" not in roster_office.gate_keys(office.db)
