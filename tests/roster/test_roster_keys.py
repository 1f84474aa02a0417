"""The roster's keys outlive a device-key rotation: the gate's X25519 key (registered at the
office), an office's roster ids and what it sealed locally stay the same."""

from __future__ import annotations

import os
from dataclasses import replace

from gateway.keys import Keys, carry_over
from gateway.privacy.roster_crypto import gate_private, public_b64, roster_id


def _rotated(keys: Keys) -> Keys:
    """What a device-key rotation leaves: a new device key, the carried subkeys."""
    return replace(keys, device=os.urandom(32), carried=carry_over(keys))


def test_the_gate_roster_key_survives_a_device_rotation() -> None:
    keys = Keys(os.urandom(32), os.urandom(32), os.urandom(32))
    before = public_b64(gate_private(keys.roster_root))
    after = _rotated(keys)
    assert after.device != keys.device
    assert public_b64(gate_private(after.roster_root)) == before
    # the carried root is what keeps it: derived afresh from the new device key it differs
    fresh = replace(after, carried={})
    assert public_b64(gate_private(fresh.roster_root)) != before


def test_office_roster_ids_survive_a_device_rotation() -> None:
    keys = Keys(os.urandom(32), os.urandom(32), os.urandom(32))
    rid = roster_id(keys.roster_root, "north", "person-1")
    assert roster_id(_rotated(keys).roster_root, "north", "person-1") == rid
    assert roster_id(keys.roster_root, "south", "person-1") != rid  # per gate
