"""``[privacy] template_protection = "cancelable"``: enrolment, 1:N and 1:1 matching through the
vault, device-key rotation, and the transform rotation that needs re-enrolment."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from gateway.config.base import SecretRef
from gateway.config.root import load_config
from gateway.config.settings import match_settings
from gateway.errors import ConfigError
from gateway.face.gallery import Gallery
from gateway.face.protection import CANCELABLE_THRESHOLD_SCALE, Mode
from gateway.keys import Keys
from gateway.privacy import people
from gateway.privacy.sync import SyncError, export_sync_args, import_bundle
from gateway.privacy.vault import Vault, VaultError, rekey_templates
from gateway.services import keys as svc
from gateway.store import database as store

from .conftest import FakeGallery, random_embedding
from .test_sync import THRESHOLD, Gate, _args, _enrol, _probe

RNG = np.random.default_rng(30136)


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True), np.float32)


def _faces(people: int) -> tuple[np.ndarray, np.ndarray]:
    """Three enrolment captures and one probe per person (captures at cosine ~0.75)."""
    base = RNG.standard_normal((people, 1, 128))
    enrol = _unit(base + 0.6 * RNG.standard_normal((people, 3, 128)))
    probe = _unit(base[:, 0] + 0.6 * RNG.standard_normal((people, 128)))
    return enrol, probe


def _people(db: sqlite_utils.Database, n: int) -> list[str]:
    return [people.add_person(db, f"Person {i}", unit=f"1-{i}", role="resident") for i in range(n)]


def _keys() -> Keys:
    return Keys(device=secrets.token_bytes(32), site=secrets.token_bytes(32))


def test_cancelable_vault_enrols_identifies_and_verifies(db: sqlite_utils.Database) -> None:
    vault = Vault.from_keys(_keys(), protection="cancelable")
    enrol, probes = _faces(20)
    gallery = Gallery(vault.dim)
    ids = _people(db, 20)
    for pid, captures in zip(ids, enrol, strict=True):
        gallery.replace_person(pid, vault.store_templates(db, pid, captures, model="sface"))
    loaded = vault.load_person(db, ids[3])
    assert loaded.shape == (3, 256)
    assert vault.dim == 256
    assert np.unique(np.abs(loaded)).size == 1  # sign bits only: no magnitude is stored
    scale = vault.site.score_scale
    found = [gallery.identify(p, 0.5 * scale, 0.05 * scale) for p in vault.transform(probes)]
    assert found == ids
    probe = vault.transform(probes[:2])
    assert gallery.verify(probe[0], ids[0], 0.5 * scale)
    assert not gallery.verify(probe[1], ids[0], 0.5 * scale)
    stranger = vault.transform(_unit(RNG.standard_normal((1, 128))))[0]
    assert gallery.identify(stranger, 0.5 * scale, 0.05 * scale) is None
    assert Vault.from_keys(_keys()).dim == 128  # the orthogonal default keeps 128-d rows


def test_templates_of_the_other_mode_do_not_decrypt(db: sqlite_utils.Database) -> None:
    keys = _keys()
    enrol, _ = _faces(1)
    (pid,) = _people(db, 1)
    Vault.from_keys(keys, protection="orthogonal").store_templates(db, pid, enrol[0], model="m")
    with pytest.raises(VaultError, match="does not decrypt"):
        Vault.from_keys(keys, protection="cancelable").load_person(db, pid)


def _cancelable_gate(db: sqlite_utils.Database, keys: Keys, n: int) -> tuple[Vault, list[str]]:
    """``n`` people enrolled (3 captures each) under the cancelable mode."""
    vault = Vault.from_keys(keys, protection="cancelable")
    enrol, _ = _faces(n)
    ids = _people(db, n)
    for pid, captures in zip(ids, enrol, strict=True):
        vault.store_templates(db, pid, captures, model="m")
    return vault, ids


def test_device_rotation_keeps_cancelable_templates_transform_rotation_refuses(
    db: sqlite_utils.Database,
) -> None:
    keys = _keys()
    old, ids = _cancelable_gate(db, keys, 3)
    before = old.load_person(db, ids[1])
    new_device = Vault.from_keys(Keys(secrets.token_bytes(32), keys.site), protection="cancelable")
    assert rekey_templates(db, old, new_device) == (3, 9)
    np.testing.assert_array_equal(new_device.load_person(db, ids[1]), before)
    new_gates = Vault.from_keys(
        Keys(keys.device, keys.site, secrets.token_bytes(32)), protection="cancelable"
    )
    with pytest.raises(VaultError, match="re-enrolling"):
        rekey_templates(db, new_device, new_gates)
    np.testing.assert_array_equal(new_device.load_person(db, ids[1]), before)  # untouched


def test_gates_rotation_with_cancelable_templates_carries_the_transform_over(
    db: sqlite_utils.Database, tmp_path: Path
) -> None:
    """The gates key also keys bundle wrapping and the withdrawal fan-out: it rotates in the
    cancelable mode too, the stored templates keep the current transform key (carried,
    sealed under the device key), and a later device rotation keeps carrying it."""
    from gateway.keys import Purpose, carry_over
    from gateway.services.keys import read_carried

    keys = _keys()
    old, ids = _cancelable_gate(db, keys, 2)
    before = old.load_person(db, ids[0])
    gates = tmp_path / "gates-key"

    done = svc.rotate_transform(db, keys, SecretRef(file=gates), actor="t", protection="cancelable")

    assert (done.people, done.templates) == (2, 6)
    carried = read_carried(db.conn, keys.device)
    new = Keys(keys.device, keys.site, SecretRef(file=gates).read_bytes(), carried)
    for purpose in (Purpose.BUNDLE_WRAP, Purpose.WITHDRAWAL_FANOUT):
        assert new.subkey(purpose) != keys.subkey(purpose)
    assert new.subkey(Purpose.TEMPLATE_TRANSFORM) == keys.subkey(Purpose.TEMPLATE_TRANSFORM)
    vault = Vault.from_keys(new, protection="cancelable")
    np.testing.assert_array_equal(vault.load_person(db, ids[0]), before)
    assert carry_over(new)[Purpose.TEMPLATE_TRANSFORM] == keys.subkey(Purpose.TEMPLATE_TRANSFORM)
    (row,) = db.execute("SELECT details FROM audit WHERE action = 'keys.rotate'").fetchall()
    assert '"template_transform":"carried over"' in row[0]


def test_gates_rotation_without_cancelable_templates_renews_the_transform(
    db: sqlite_utils.Database, tmp_path: Path
) -> None:
    from gateway.keys import Purpose
    from gateway.services.keys import read_carried

    keys = _keys()
    gates = tmp_path / "gates-key"
    svc.rotate_transform(db, keys, SecretRef(file=gates), actor="t", protection="cancelable")
    new_gates = SecretRef(file=gates).read_bytes()
    new = Keys(keys.device, keys.site, new_gates, read_carried(db.conn, keys.device))
    assert Purpose.TEMPLATE_TRANSFORM not in new.carried
    assert new.subkey(Purpose.TEMPLATE_TRANSFORM) != keys.subkey(Purpose.TEMPLATE_TRANSFORM)


def test_config_selects_the_mode_strictly_and_scales_the_thresholds(
    minimal_config: Path,
) -> None:
    base = minimal_config.read_text()
    assert load_config(minimal_config, env=False).privacy.template_protection == "orthogonal"
    orthogonal = match_settings(load_config(minimal_config, env=False))
    minimal_config.write_text(
        base.replace("[privacy]\n", '[privacy]\ntemplate_protection = "cancelable"\n')
    )
    cfg = load_config(minimal_config, env=False)
    scaled = match_settings(cfg)
    assert scaled.threshold == pytest.approx(orthogonal.threshold * CANCELABLE_THRESHOLD_SCALE)
    assert scaled.verify_threshold == pytest.approx(
        orthogonal.verify_threshold * CANCELABLE_THRESHOLD_SCALE
    )
    minimal_config.write_text(
        base.replace("[privacy]\n", '[privacy]\ntemplate_protection = "biohash"\n')
    )
    with pytest.raises(ConfigError, match="template_protection"):
        load_config(minimal_config, env=False)


def _sync_gate(tmp_path: Path, name: str, site: bytes, mode: Mode) -> Gate:
    db = store.connect(tmp_path / name / "state.db")
    vault = Vault.from_root_keys(secrets.token_bytes(32), site, protection=mode)
    return Gate(db, vault, FakeGallery({}), site)


def test_sync_carries_cancelable_templates_between_gates_of_one_mode(tmp_path: Path) -> None:
    site = secrets.token_bytes(32)
    a = _sync_gate(tmp_path, "a", site, "cancelable")
    b = _sync_gate(tmp_path, "b", site, "cancelable")
    c = _sync_gate(tmp_path, "c", site, "orthogonal")
    pid = _enrol(a, tmp_path)
    sync_args = _args(
        export_sync_args(a.db, a.vault, pid, a.site_key, seal_key=site, actor="office-1")
    )
    import_bundle(b.db, b.vault, b.gallery, sync_args, b.site_key, seal_key=site, actor="mqtt:mgmt")
    np.testing.assert_array_equal(b.vault.load_person(b.db, pid), a.vault.load_person(a.db, pid))
    threshold = THRESHOLD * CANCELABLE_THRESHOLD_SCALE
    assert b.gallery.identify(b.vault.transform(_probe()), threshold) == pid
    assert b.gallery.identify(b.vault.transform(random_embedding(77)), threshold) is None
    with pytest.raises(SyncError):  # a gate of the other mode cannot take the bundle
        import_bundle(
            c.db, c.vault, c.gallery, sync_args, c.site_key, seal_key=site, actor="mqtt:mgmt"
        )
    assert not c.vault.has_face_data(c.db, pid)
    for g in (a, b, c):
        g.db.conn.close()


def test_cli_export_bundle_uses_the_configured_protection(
    tmp_path: Path, minimal_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: ``gateway people export-bundle`` built an orthogonal vault whatever the
    config said, so a cancelable gate's bundle opened on no gate of its site."""
    import argparse

    from gateway.cli import privacy as commands

    text = minimal_config.read_text()
    minimal_config.write_text(
        text.replace("[privacy]\n", '[privacy]\ntemplate_protection = "cancelable"\n')
    )
    cfg = load_config(minimal_config, env=False)
    keys = Keys.from_config(cfg)
    db = store.connect(cfg.storage.database_path)
    a = Gate(db, Vault.from_keys(keys, protection="cancelable"), FakeGallery({}), keys.site)
    pid = _enrol(a, tmp_path)
    db.conn.close()
    out = tmp_path / "bundle.json"
    parser = argparse.ArgumentParser(prog="gateway")
    parser.add_argument("--config", type=Path, default=None)
    commands.register(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(
        ["--config", str(minimal_config), "people", "export-bundle", pid, "--out", str(out)]
    )
    assert ns.func(ns) == 0, capsys.readouterr().err
    b = _sync_gate(tmp_path, "b", keys.site, "cancelable")
    sync_args = _args(json.loads(out.read_text()))
    import_bundle(
        b.db, b.vault, b.gallery, sync_args, b.site_key, seal_key=keys.site, actor="mqtt:mgmt"
    )
    threshold = THRESHOLD * CANCELABLE_THRESHOLD_SCALE
    assert b.gallery.identify(b.vault.transform(_probe()), threshold) == pid
    b.db.conn.close()
