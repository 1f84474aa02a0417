"""``gateway keys rotate --what audit|access-log|card|pseudonym``: each purpose's stored
values follow its new key in one transaction, without re-enrolment; the old key and the old
stored values are gone from the database, its WAL and the credentials directory; faces,
cards, PINs and the audit chain still work; the rotation is in the compliance report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gateway.config.root import GatewayConfig, load_config
from gateway.credentials.hashing import make_hasher, pin_index_for
from gateway.credentials.store import Credentials
from gateway.gate.audit_watch import check_published, head_payload
from gateway.keys import (
    CARRY_KV,
    Keys,
    Purpose,
    key_id,
    layers,
    pin_index_key,
    rekey_pin_index,
)
from gateway.mqtt.pseudonym import pseudonym
from gateway.privacy import access_log, audit
from gateway.services import key_purposes
from gateway.services.keys import RotationError, kv_value
from tests.keys.legacy import legacy_config
from tests.keys.rotation_checks import Card, close_gate, on_disk, open_gate, rotate, still_works


@dataclass
class Before:
    """The gate before a rotation: its keys and the stored values keyed by them."""

    keys: Keys
    carried_kv: str | None
    card_hmacs: list[bytes]
    audit_hashes: list[str]
    subjects: list[str]


def _gate(tmp_path: Path, minimal_config: Path) -> tuple[GatewayConfig, np.ndarray, Before]:
    """The legacy gate after a device rotation, with access-log rows (one of a person no
    longer on record)."""
    raw = legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    rotate(minimal_config, "device")  # carried keys sealed in the database: the rotation's
    db, keys = open_gate(cfg)  # must leave no copy of them sealed under the old device key
    for ts, pid in ((1.0, "p1"), (2.0, "p1"), (3.0, "gone")):
        access_log.record(
            db, ts=ts, door="main", method="card", granted=True, reason="ok", person_id=pid
        )
    before = Before(
        keys,
        kv_value(db.conn, CARRY_KV),
        [bytes(r[0]) for r in db.execute("SELECT card_hmac FROM cards")],
        [str(r[0]) for r in db.execute("SELECT hash FROM audit WHERE key_id IS NOT NULL")],
        [str(r[0]) for r in db.execute("SELECT subject FROM access_log")],
    )
    close_gate(db)
    return cfg, raw, before


def _gone(cfg: GatewayConfig, tmp_path: Path, before: Before, *secrets: bytes) -> None:
    disk = on_disk(cfg, tmp_path / "legacy-keys")
    assert before.keys.device not in disk
    for value in secrets:
        assert value not in disk
    assert before.carried_kv is not None  # the keys sealed under the old device key
    assert before.carried_kv.encode() not in disk


def test_audit_key_rotation_re_macs_the_chain_and_erases_the_old_key(
    tmp_path: Path, minimal_config: Path
) -> None:
    cfg, raw, before = _gate(tmp_path, minimal_config)
    old_key = before.keys.subkey(Purpose.AUDIT_CHAIN)

    rotate(minimal_config, "audit")

    keys = still_works(cfg, raw, "audit")
    assert keys.subkey(Purpose.AUDIT_CHAIN) != old_key
    assert Purpose.AUDIT_CHAIN not in keys.carried  # derived from the new device key
    _gone(cfg, tmp_path, before, old_key, *(h.encode() for h in before.audit_hashes))
    db, _ = open_gate(cfg)
    try:
        assert not audit.verify(db, audit.ChainKey(old_key)).ok
    finally:
        close_gate(db)
    rotate(minimal_config, "device")  # the renewed audit key is carried from now on
    assert still_works(cfg, raw, "device").subkey(Purpose.AUDIT_CHAIN) == keys.subkey(
        Purpose.AUDIT_CHAIN
    )


def test_access_log_key_rotation_moves_every_subject(tmp_path: Path, minimal_config: Path) -> None:
    cfg, raw, before = _gate(tmp_path, minimal_config)
    old_key = before.keys.subkey(Purpose.ACCESS_LOG)

    rotate(minimal_config, "access-log")

    keys = still_works(cfg, raw, "access-log")
    new_key = keys.subkey(Purpose.ACCESS_LOG)
    assert new_key != old_key
    _gone(cfg, tmp_path, before, old_key, *(s.encode() for s in before.subjects))
    db, _ = open_gate(cfg)
    try:
        subjects = [str(r[0]) for r in db.execute("SELECT subject FROM access_log ORDER BY ts")]
    finally:
        close_gate(db)
    p1 = access_log.subject_of(new_key, "p1")
    assert subjects[:2] == [p1, p1]  # a person on record keeps one subject
    assert subjects[2] not in (p1, access_log.subject_of(new_key, "gone"))


def test_card_key_rotation_layers_the_stored_hashes(tmp_path: Path, minimal_config: Path) -> None:
    cfg, raw, before = _gate(tmp_path, minimal_config)

    rotate(minimal_config, "card")

    keys = still_works(cfg, raw, "card")
    assert len(keys.carried[Purpose.CARD_REKEY]) == 32
    _gone(cfg, tmp_path, before, *before.card_hmacs)
    db, _ = open_gate(cfg)
    try:
        stale = Credentials(db, keys.device, index_key=keys.pin_index_site)  # no layer
        assert stale.identify_card(Card()) is None
    finally:
        close_gate(db)

    rotate(minimal_config, "card")  # a second layer
    assert len(still_works(cfg, raw, "card").carried[Purpose.CARD_REKEY]) == 64
    rotate(minimal_config, "device")  # the layers are carried over a device rotation
    still_works(cfg, raw, "device")


def test_card_and_pin_keys_are_not_rotated_at_a_roster_office(
    tmp_path: Path, minimal_config: Path
) -> None:
    cfg, _raw, _before = _gate(tmp_path, minimal_config)
    db, keys = open_gate(cfg)
    try:
        office = cfg.model_copy(update={"roster": cfg.roster.model_copy(update={"role": "office"})})
        stored = db.execute("SELECT card_hmac FROM cards UNION ALL SELECT pin_index FROM pins")
        before_rows, carried = stored.fetchall(), kv_value(db.conn, CARRY_KV)
        for what in ("card", "pin"):  # the gates could not match what the office sends
            with pytest.raises(RotationError, match=f"{what} key is not rotated at a roster"):
                key_purposes.rotate(db, keys, office, what, actor="ops")
        stored = db.execute("SELECT card_hmac FROM cards UNION ALL SELECT pin_index FROM pins")
        assert (stored.fetchall(), kv_value(db.conn, CARRY_KV)) == (before_rows, carried)
    finally:
        close_gate(db)


def test_pseudonym_rotation_moves_to_the_next_generation(
    tmp_path: Path, minimal_config: Path
) -> None:
    cfg, raw, before = _gate(tmp_path, minimal_config)
    old_key = before.keys.pseudonym

    rotate(minimal_config, "pseudonym")

    keys = still_works(cfg, raw, "pseudonym")
    disk = on_disk(cfg, tmp_path / "legacy-keys")
    assert old_key not in disk
    assert keys.pseudonym not in disk  # derived from the site key, never stored
    assert keys.generations == {Purpose.PSEUDONYM: 1}
    assert keys.device == before.keys.device  # a site-rooted purpose: no device rotation
    assert keys.pseudonym != old_key
    assert pseudonym("p0", keys.pseudonym, 7) != pseudonym("p0", old_key, 7)
    db, _ = open_gate(cfg)
    try:
        with pytest.raises(RotationError, match="generation 1 already"):
            key_purposes.rotate(db, keys, cfg, "pseudonym", actor="ops", generation=1)
        done = key_purposes.rotate(db, keys, cfg, "pseudonym", actor="ops", generation=3)
        assert done.new_key_id != done.old_key_id
        assert key_purposes.generation_of(db, "pseudonym") == 3
        with pytest.raises(RotationError, match="no generation"):
            key_purposes.rotate(db, keys, cfg, "card", actor="ops", generation=2)
    finally:
        close_gate(db)
    assert load_config(minimal_config, env=False) == cfg


def test_a_failed_purpose_rotation_changes_nothing(tmp_path: Path, minimal_config: Path) -> None:
    cfg, _, before = _gate(tmp_path, minimal_config)
    db, keys = open_gate(cfg)
    try:
        (actor,) = db.execute("SELECT actor FROM audit WHERE seq = 2").fetchone()
        db.execute("UPDATE audit SET actor = 'forged' WHERE seq = 2")  # a broken chain
        with pytest.raises(audit.AuditError, match="does not verify"):
            key_purposes.rotate(db, keys, cfg, "audit", actor="ops")
        db.execute("UPDATE audit SET actor = ? WHERE seq = 2", [actor])
        bound = audit.bound_key(db)
        assert bound is not None
        assert bound.key == keys.subkey(Purpose.AUDIT_CHAIN)  # the old key is bound again
        assert audit.verify(db).ok
        hashes = [str(r[0]) for r in db.execute("SELECT hash FROM audit WHERE key_id IS NOT NULL")]
        assert hashes == before.audit_hashes
        assert kv_value(db.conn, "keys.device_id") == key_id(before.keys.device)  # unchanged
        assert kv_value(db.conn, CARRY_KV) == before.carried_kv
    finally:
        close_gate(db)
    key_file = tmp_path / "legacy-keys" / "device"
    assert key_file.read_bytes().strip() == before.keys.device
    assert not key_file.with_name("device.new").exists()


def test_the_audit_head_published_before_an_audit_rotation_is_still_recognised(
    tmp_path: Path, minimal_config: Path
) -> None:
    cfg, _, before = _gate(tmp_path, minimal_config)
    old = audit.ChainKey(before.keys.subkey(Purpose.AUDIT_CHAIN))
    db, _ = open_gate(cfg)
    try:
        rows = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 2").fetchall()
    finally:
        close_gate(db)
    (last, last_hash), (earlier, earlier_hash) = rows
    at_rotation = head_payload(old, last, last_hash)  # the head the broker holds
    forged = head_payload(old, last, "f" * 64)
    older = head_payload(old, earlier, earlier_hash)

    rotate(minimal_config, "audit")

    db, keys = open_gate(cfg)
    try:
        new = audit.ChainKey(keys.subkey(Purpose.AUDIT_CHAIN))
        assert check_published(db, new, at_rotation) is None
        assert "rewritten" in str(check_published(db, new, forged))
        assert check_published(db, new, older) is None  # predates it: not comparable
        head = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        assert check_published(db, new, head_payload(new, head[0], head[1])) is None
        assert check_published(db, new, head_payload(new, head[0], "0" * 64)) is not None
    finally:
        close_gate(db)


def test_pin_index_rotation_layers_the_stored_indexes(tmp_path: Path, minimal_config: Path) -> None:
    cfg, raw, before = _gate(tmp_path, minimal_config)
    office = pin_index_for("482913", pin_index_key(before.keys.site))  # what the office computes
    db, _ = open_gate(cfg)
    try:
        (stored_before,) = db.execute("SELECT pin_index FROM pins").fetchone()
    finally:
        close_gate(db)

    rotate(minimal_config, "pin")

    keys = still_works(cfg, raw, "pin")  # p0's PIN still identifies p0
    _gone(cfg, tmp_path, before, before.keys.pin_index_site)
    assert len(keys.carried[Purpose.PIN_REKEY]) == 32
    db, _ = open_gate(cfg)
    try:
        (stored,) = db.execute("SELECT pin_index FROM pins").fetchone()
        assert stored == rekey_pin_index(stored_before, layers(keys.carried, Purpose.PIN_INDEX))
        assert stored not in (stored_before, office)  # the site key no longer gives the bucket
        # the office keeps sending un-layered indexes: the gate layers them
        creds = Credentials(db, keys.device, index_key=keys.pin_index_site, carried=keys.carried)
        pin_hash = make_hasher().hash("570394")
        index = pin_index_for("570394", pin_index_key(keys.site))
        creds.set_pin_hash("p1", pin_hash, index, 1_780_000_000.0)
        match = creds.identify_pin("570394", reader="entry", now=1_780_000_100.0)
        assert match is not None
        assert match.person_id == "p1"
    finally:
        close_gate(db)
    rotate(minimal_config, "device")  # the PIN layers are carried over a device rotation
    still_works(cfg, raw, "device")


def test_a_purpose_key_is_never_adopted_from_a_file(
    tmp_path: Path, minimal_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli.main import main

    legacy_config(tmp_path, minimal_config)
    stray = tmp_path / "stray-key"
    stray.write_bytes(b"k" * 32)
    argv = ["--config", str(minimal_config), "keys", "rotate", "--what", "card", "--key"]
    assert main([*argv, str(stray)]) == 2
    assert "a card key is never copied" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse names the keys that rotate
        main(["--config", str(minimal_config), "keys", "rotate", "--what", "everything"])
    assert "invalid choice: 'everything'" in capsys.readouterr().err


def test_rotation_commit_is_synced_before_the_key_moves(
    tmp_path: Path, minimal_config: Path
) -> None:
    """Regression: the rotation committed under the database's ``synchronous = NORMAL`` (a
    WAL commit a power cut can undo) and then replaced the key file: the database could come
    back under the old key with the old key gone. It must commit under FULL, and must not
    join a caller's open transaction (the key would move before anything committed)."""
    from gateway.services import keys as keys_svc

    legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    db, keys = open_gate(cfg)
    seen: list[int] = []

    def migrate(d: object, old: Keys, new: Keys) -> dict[str, int]:
        seen.append(int(db.execute("PRAGMA synchronous").fetchone()[0]))
        return {}

    try:
        db.execute("BEGIN IMMEDIATE")
        with pytest.raises(Exception, match="transaction"):
            keys_svc.rotate_device(db, keys, cfg, actor="ops", migrate=migrate)
        db.execute("ROLLBACK")
        assert load_keys_id(cfg) == key_id(keys.device)  # nothing moved
        keys_svc.rotate_device(db, keys, cfg, actor="ops", migrate=migrate)
        assert seen == [2]  # FULL while the rotation's transaction commits
        assert int(db.execute("PRAGMA synchronous").fetchone()[0]) == 1  # NORMAL again
    finally:
        close_gate(db)


def load_keys_id(cfg: GatewayConfig) -> str:
    """The id of the device key the gate's key file holds now."""
    return key_id(Keys.from_config(cfg).device)


def test_a_second_rotation_on_stale_keys_is_refused_and_loses_nothing(
    tmp_path: Path, minimal_config: Path
) -> None:
    """Regression: the daemon keeps its keys in memory until its restart after a signed
    ``rotate_keys``. A second rotation in that window (the office resending, or rotating card
    then PIN) ran on the stale keys: the card layer of the first one was dropped (every card
    dead, for good: the layer was sealed under an erased device key) and a failed audit
    rotation re-bound the old audit key (the chain broken by every later row). It must be
    refused, leaving the keys bound as the first rotation left them."""
    cfg, raw, _ = _gate(tmp_path, minimal_config)
    db, keys = open_gate(cfg)  # ``keys``: what the running daemon holds
    try:
        key_purposes.rotate(db, keys, cfg, "card", actor="ops")
        bound = audit.bound_key(db)
        for what in ("pin", "audit", "device"):
            with pytest.raises(RotationError, match="restart"):
                key_purposes.rotate(db, keys, cfg, what, actor="ops")
            assert audit.bound_key(db) is bound
        assert audit.verify(db).ok
    finally:
        close_gate(db)
    still_works(cfg, raw, "card")


def test_the_old_device_key_file_is_overwritten_not_only_unlinked(
    tmp_path: Path, minimal_config: Path
) -> None:
    """Regression: the new key file was renamed over the old one, which only dropped the old
    key's name: its blocks (and any other link to its inode) kept the old key."""
    legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    ref = cfg.privacy.device_key
    assert ref is not None
    assert ref.file is not None
    old = ref.file.read_bytes()
    link = tmp_path / "old-device-key-inode"
    link.hardlink_to(ref.file)  # stands for the old inode's blocks

    rotate(minimal_config, "device")

    assert ref.file.read_bytes() != old
    assert old.strip() not in link.read_bytes()


def test_a_key_move_failing_after_the_commit_keeps_the_new_audit_key_bound(
    tmp_path: Path, minimal_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: an audit rotation whose key file could not be moved in after its commit
    re-bound the old audit key: every later audited operation of the process was refused
    (the chain is keyed by the new one). The committed rotation's key must stay bound; the
    next load finishes the move."""
    from gateway.services import keys as keys_svc

    raw = legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    db, keys = open_gate(cfg)
    try:

        def fail(staged: Path, target: Path) -> None:
            raise OSError("read-only file system")

        with monkeypatch.context() as m:
            m.setattr(keys_svc, "commit_key_file", fail)
            with pytest.raises(OSError):
                key_purposes.rotate(db, keys, cfg, "audit", actor="ops")
        audit.append(db, "ops", "test.after", "x", {})
        assert audit.verify(db).ok
    finally:
        close_gate(db)
    still_works(cfg, raw, "audit")


def test_a_card_hash_from_before_a_card_rotation_still_revokes_the_card(
    tmp_path: Path, minimal_config: Path
) -> None:
    """Regression: ``revoke_card`` names a card by the hash the gate stored; a card rotation
    layers every stored hash, so a hash the office kept from before it matched nothing: the
    revocation answered ``revoked: 0`` and the card kept opening."""
    from gateway.credentials.hashing import card_digest
    from gateway.keys import rekey_card
    from gateway.services import credentials as creds_svc

    cfg, _, before = _gate(tmp_path, minimal_config)
    card = Card()
    old = before.keys
    digest = card_digest(old.subkey(Purpose.CARD_LOOKUP), card.facility, card.card_number)
    given = rekey_card(digest, layers(old.carried, Purpose.CARD_LOOKUP))  # the office's copy
    assert given in before.card_hmacs
    rotate(minimal_config, "card")
    db, keys = open_gate(cfg)
    try:
        creds = Credentials(db, keys.device, index_key=keys.pin_index_site, carried=keys.carried)
        assert creds.identify_card(card) == "p3"
        n = creds_svc.revoke_card(
            creds_svc.CredentialDeps(creds), "p3", actor="office", channel="mqtt", card_hmac=given
        )
        assert n == 1
        assert creds.identify_card(card) is None
    finally:
        close_gate(db)
