"""Issue 20, scope 2: the roster office holds only the keys its work needs, never a gate's
template-transform key. It sends each gate untransformed templates sealed for that gate
alone (X25519); the gate applies its own template protection, so a face enrolled at the
office matches at the gate, in either protection mode."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from gateway.config.root import load_config
from gateway.errors import ConfigError
from gateway.keys import Purpose
from gateway.privacy.roster_crypto import roster_id
from gateway.services import consent as consent_svc
from gateway.services import people as people_svc
from gateway.services.key_rotation import snapshot
from tests.keys.rotation_checks import db_and_wal
from tests.roster.support import GATES_KEY, NOTICE, Gate, Office, face, make_gate, make_office


def _enrol(office: Office, name: str, raw: np.ndarray) -> str:
    """Enrol ``raw`` embeddings at the office as its enrolment does (its own transform)."""
    pid = people_svc.add_person(office.db, people_svc.NewPerson(name, unit="3-402"), actor="t")
    consent_svc.grant(
        office.db, NOTICE, consent_svc.ConsentAnswer(pid, "paper", "t", scope="compound")
    )
    office.vault.store_templates(office.db, pid, raw, model="sface")
    return pid


def _stored_at(gate: Gate, office: Office, pid: str) -> np.ndarray:
    rid = roster_id(office.deps.device_root, gate.name, pid)
    return gate.vault.load_person(gate.db, rid)


def test_the_office_holds_no_gate_transform_key_and_its_faces_match_at_the_gates(
    tmp_path: Path,
) -> None:
    office = make_office(tmp_path)
    north = make_gate(tmp_path, "north", office)
    south = make_gate(tmp_path, "south", office, protection="cancelable")
    li, wang = face(11), face(12)
    pid_li, pid_wang = _enrol(office, "Li Wei", li), _enrol(office, "Wang Fang", wang)
    broker: dict[str, bytes] = {}
    office.publish(broker)
    north.sync(broker, office)
    south.sync(broker, office)

    # the office: no gates key, none of its keys is a gate's transform (or bundle) key
    gate_keys = [north.keys.subkey(p) for p in (Purpose.TEMPLATE_TRANSFORM, Purpose.BUNDLE_WRAP)]
    assert office.keys.gates is None
    held = set(snapshot(office.db, office.keys).keys.values())
    assert not held & {GATES_KEY, *gate_keys}
    disk = db_and_wal(tmp_path / "office.db")
    for key in (GATES_KEY, *gate_keys):
        for form in (key, key.hex().encode(), base64.b64encode(key)):
            assert form not in disk
    # its own transform is not the gates': what it stores is not what a gate matches
    assert not np.allclose(office.vault.load_person(office.db, pid_li), north.vault.transform(li))

    # each gate stored the faces under its own protection: they match there
    for gate, floor in ((north, 0.999), (south, 0.7)):
        for pid, mine, other in ((pid_li, li, wang), (pid_wang, wang, li)):
            stored = _stored_at(gate, office, pid)
            assert stored.shape[0] == 3
            same = np.diag(gate.vault.transform(mine) @ stored.T)
            assert same.min() > floor, (gate.name, same)
            assert (gate.vault.transform(other) @ stored.T).max() < same.min()
    # a gate that was sent site-space templates would have stored them as given: not these
    north_li = _stored_at(north, office, pid_li)
    assert not np.allclose(north_li, office.vault.load_person(office.db, pid_li), atol=1e-3)


def test_an_office_keeps_invertible_templates_and_needs_no_gates_key(
    tmp_path: Path, minimal_config: Path
) -> None:
    from gateway.cli.doctor import check_gates_key

    text = minimal_config.read_text() + f'\n[roster]\nrole = "office"\nsigning_key = "{tmp_path}"\n'
    minimal_config.write_text(text)
    assert check_gates_key(load_config(minimal_config, env=False)).status == "PASS"
    gates = tmp_path / "gates-key"
    minimal_config.write_text(
        text.replace("[privacy]\n", f'[privacy]\ngates_key = {{ file = "{gates}" }}\n', 1)
    )
    assert "needs no gates key" in check_gates_key(load_config(minimal_config, env=False)).detail
    cancelable = text.replace("[privacy]\n", '[privacy]\ntemplate_protection = "cancelable"\n', 1)
    minimal_config.write_text(cancelable)
    with pytest.raises(ConfigError, match="orthogonal"):
        load_config(minimal_config, env=False)
