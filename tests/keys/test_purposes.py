"""One key per purpose: the Purpose table, the office's share, and a database made before it."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
from pathlib import Path

import numpy as np
import pytest

from gateway.credentials.hashing import CredentialError, open_pin_hash, seal_pin_hash
from gateway.credentials.store import Credentials
from gateway.keys import Keys, Purpose, Root, office_purposes, subkey_of
from gateway.privacy import audit
from gateway.privacy.sync import bundle_wrap_key
from gateway.privacy.vault import Vault
from gateway.store import database as store
from tests.keys.legacy import legacy


def _keys(gates: bool = True) -> Keys:
    return Keys(
        device=secrets.token_bytes(32),
        site=secrets.token_bytes(32),
        gates=secrets.token_bytes(32) if gates else None,
    )


@pytest.mark.parametrize("gates", [True, False])
def test_no_two_purposes_share_key_material(gates: bool) -> None:
    keys = _keys(gates)
    subkeys = {p: keys.subkey(p) for p in Purpose}
    for a, b in itertools.combinations(Purpose, 2):
        assert subkeys[a] != subkeys[b], (a, b)
    for key in subkeys.values():
        assert key not in (keys.device, keys.site, keys.gates)
    assert len({p.spec.label for p in Purpose}) == len(Purpose)


def test_the_office_holds_only_site_keys_never_the_template_transform() -> None:
    office = set(office_purposes())
    assert office == {
        Purpose.PSEUDONYM,
        Purpose.PIN_INDEX,
        Purpose.PIN_TRANSPORT,
        Purpose.PERSON_REF,
    }
    assert all(p.spec.root is Root.SITE for p in office)
    assert all(p.spec.root is not Root.SITE for p in set(Purpose) - office)
    # a gate with its own gates key: nothing the site key derives opens a gate's templates
    keys = _keys()
    office_view = Keys(device=secrets.token_bytes(32), site=keys.site)
    assert office_view.subkey(Purpose.TEMPLATE_TRANSFORM) != keys.subkey(Purpose.TEMPLATE_TRANSFORM)
    assert bundle_wrap_key(office_view.site) != bundle_wrap_key(keys.gates_root)


def test_the_pin_transport_seal_opens_with_the_site_key_only() -> None:
    keys = _keys()
    sealed = seal_pin_hash("$argon2id$fake", "p1", keys.site)
    assert open_pin_hash(sealed, "p1", keys.site) == "$argon2id$fake"
    with pytest.raises(CredentialError):
        open_pin_hash(sealed, "p1", keys.gates_root)


def test_a_database_made_before_the_purpose_table_keeps_working(tmp_path: Path) -> None:
    path, keys, raw = legacy(tmp_path)
    db = store.connect(path)
    audit.bind_key(db, audit.ChainKey(keys.subkey(Purpose.AUDIT_CHAIN)))
    assert audit.verify(db).ok
    vault = Vault.from_keys(keys)
    for i in range(len(raw)):
        stored = vault.load_person(db, f"p{i}")
        np.testing.assert_allclose(stored, vault.transform(raw[i]), atol=1e-6)
    creds = Credentials(db, keys.device, index_key=keys.pin_index_site)

    class Card:
        facility = 12
        card_number = 1002

    assert creds.identify_card(Card()) == "p2"
    match = creds.identify_pin("482913", reader="entry", now=1_780_000_100.0)
    assert match is not None
    assert match.person_id == "p0"
    audit.append(db, "test", "check", "legacy", {})  # the chain goes on under the same key
    assert audit.verify(db).ok
    audit.bind_key(db, None)


def test_subkeys_are_the_labels_of_the_table() -> None:
    root = secrets.token_bytes(32)
    assert (
        subkey_of(root, Purpose.CARD_LOOKUP)
        == hmac.new(root, b"access-gateway/card-v1", hashlib.sha256).digest()
    )
    assert audit.ChainKey.from_device(root).key == subkey_of(root, Purpose.AUDIT_CHAIN)
