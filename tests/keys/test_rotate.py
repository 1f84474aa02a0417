"""``gateway keys rotate --what transform``: templates follow the new gates key in one
transaction, the gate matches the same people, the old key is gone, audited and reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gateway.config.base import SecretRef
from gateway.errors import ConfigError
from gateway.keys import Keys
from gateway.privacy import audit, compliance
from gateway.privacy.sync import bundle_wrap_key
from gateway.privacy.vault import Vault, VaultError
from gateway.services import keys as svc
from gateway.store import database as store
from tests.keys.legacy import legacy, legacy_config, open_keyed
from tests.keys.rotation_checks import db_and_wal

RNG = np.random.default_rng(24745)


def _scores(db: store.sqlite_utils.Database, vault: Vault, probes: np.ndarray) -> np.ndarray:
    """Best cosine score of every probe against every enrolled person (probes x people)."""
    people = vault.enrolled_people(db)
    site = vault.transform(probes)
    return np.array(
        [[float(np.max(vault.load_person(db, pid) @ p)) for pid in people] for p in site]
    )


def _probes(raw: np.ndarray) -> np.ndarray:
    noisy = raw[:, 0, :] + 0.03 * RNG.standard_normal(raw[:, 0, :].shape).astype(np.float32)
    strangers = RNG.standard_normal((3, raw.shape[2])).astype(np.float32)
    probes = np.concatenate([noisy, strangers])
    return probes / np.linalg.norm(probes, axis=1, keepdims=True)


def test_rotating_the_transform_keeps_every_match_and_erases_the_old_key(
    tmp_path: Path,
) -> None:
    path, keys, raw = legacy(tmp_path)
    db = open_keyed(path, keys)
    old_vault = Vault.from_keys(keys)
    probes = _probes(raw)
    before = _scores(db, old_vault, probes)
    old_p0 = old_vault.load_person(db, "p0")
    old_rows = [bytes(r[0]) for r in db.execute("SELECT ciphertext FROM templates").fetchall()]
    old_rows += [bytes(r[0]) for r in db.execute("SELECT wrapped_key FROM face_keys").fetchall()]
    gates_file = tmp_path / "cred" / "gates-key"
    gates_file.parent.mkdir()

    done = svc.rotate_transform(db, keys, SecretRef(file=gates_file), actor="tester")

    assert (done.what, done.people, done.templates) == ("transform", 4, 12)
    assert done.scrubbed
    assert gates_file.stat().st_mode & 0o777 == 0o600
    assert not gates_file.with_name("gates-key.new").exists()
    new_keys = Keys(keys.device, keys.site, SecretRef(file=gates_file).read_bytes())
    new_vault = Vault.from_keys(new_keys)
    after = _scores(db, new_vault, probes)
    np.testing.assert_allclose(after, before, atol=1e-5)
    assert list(np.argmax(after[:4], axis=1)) == [0, 1, 2, 3]  # the same people match
    # the stored vectors changed: the old transform's templates are unlinkable to the new
    assert not np.allclose(new_vault.load_person(db, "p0"), old_p0, atol=1e-2)
    with pytest.raises(VaultError):
        old_vault.load_person(db, "p0")
    files = db_and_wal(path)
    assert not any(row in files for row in old_rows)  # neither the DB nor its WAL keeps them
    rows = db.execute("SELECT actor, subject, details FROM audit WHERE action = 'keys.rotate'")
    ((actor, subject, details),) = rows.fetchall()
    assert (actor, subject) == ("tester", "transform")
    assert json.loads(details)["template_count"] == 12
    assert new_keys.gates is not None
    assert new_keys.gates.decode() not in details
    assert audit.verify(db).ok
    rep = compliance.key_rotations(db)
    assert rep["transform"]["templates"] == 12
    assert rep["transform"]["by"] == "tester"
    audit.bind_key(db, None)


def test_a_second_rotation_replaces_the_key_file_and_other_gates_adopt_it(tmp_path: Path) -> None:
    path, keys, _raw = legacy(tmp_path)
    other_path = tmp_path / "other.db"
    other_path.write_bytes(path.read_bytes())  # a second gate of the site, same people
    ref = SecretRef(file=tmp_path / "gates-key")
    db = open_keyed(path, keys)
    svc.rotate_transform(db, keys, ref, actor="t")
    first = ref.read_bytes()
    keys1 = Keys(keys.device, keys.site, first)
    svc.rotate_transform(db, keys1, ref, actor="t")
    second = ref.read_bytes()
    assert second != first
    assert first not in ref.file.read_bytes()
    keys2 = Keys(keys.device, keys.site, second)
    with pytest.raises(svc.RotationError, match="already uses"):
        svc.rotate_transform(db, keys2, ref, actor="t", new_key=second)
    audit.bind_key(db, None)

    other_ref = SecretRef(file=tmp_path / "other-gates-key")
    other = open_keyed(other_path, keys)
    svc.rotate_transform(other, keys, other_ref, actor="t", new_key=second)
    assert other_ref.read_bytes() == second
    here, there = Vault.from_keys(keys2), Vault.from_keys(Keys(keys.device, keys.site, second))
    np.testing.assert_array_equal(here.site.matrix, there.site.matrix)
    np.testing.assert_allclose(
        here.load_person(db, "p1"), there.load_person(other, "p1"), atol=1e-5
    )
    assert bundle_wrap_key(keys2.gates_root) != bundle_wrap_key(keys.site)
    audit.bind_key(other, None)


def test_a_rotation_needs_a_gates_key_file(tmp_path: Path) -> None:
    path, keys, _ = legacy(tmp_path)
    db = open_keyed(path, keys)
    with pytest.raises(svc.RotationError, match="must name a file"):
        svc.rotate_transform(db, keys, None, actor="t")
    with pytest.raises(svc.RotationError, match="must name a file"):
        svc.rotate_transform(db, keys, SecretRef(credential="gates-key"), actor="t")
    assert db.execute("SELECT count(*) FROM audit WHERE action = 'keys.rotate'").fetchone()[0] == 0
    audit.bind_key(db, None)


def test_a_failed_rotation_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, keys, _ = legacy(tmp_path)
    db = open_keyed(path, keys)
    before = [bytes(r[0]) for r in db.execute("SELECT ciphertext FROM templates ORDER BY id")]

    def broken(*_: object, **__: object) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(svc.audit, "append", broken)
    target = tmp_path / "gates-key"
    with pytest.raises(RuntimeError):
        svc.rotate_transform(db, keys, SecretRef(file=target), actor="t")
    after = [bytes(r[0]) for r in db.execute("SELECT ciphertext FROM templates ORDER BY id")]
    assert after == before
    assert not target.exists()
    assert not target.with_name("gates-key.new").exists()
    Vault.from_keys(keys).load_person(db, "p3")  # still under the old key
    audit.bind_key(db, None)


def test_cli_rotate_then_the_config_loads_the_new_gates_key(
    tmp_path: Path, minimal_config: Path
) -> None:
    from gateway.cli.main import main
    from gateway.config.root import load_config

    gates = tmp_path / "legacy-keys" / "gates"
    raw = legacy_config(tmp_path, minimal_config, f'gates_key = {{ file = "{gates}" }}\n')
    cfg = load_config(minimal_config, env=False)
    with pytest.raises(ConfigError, match=r"privacy\.gates_key"):  # never the site key silently
        Keys.from_config(cfg)
    assert Keys.from_config(cfg, gates_optional=True).gates is None  # rotate's view only

    argv = ["--config", str(minimal_config), "keys", "rotate", "--what", "transform"]
    assert main([*argv, "--actor", "ops"]) == 0

    loaded = Keys.from_config(cfg)
    assert loaded.gates == gates.read_bytes().strip()
    db = open_keyed(Path(cfg.storage.database_path), loaded)
    probe = Vault.from_keys(loaded).transform(raw[2, 1])
    assert float(np.max(Vault.from_keys(loaded).load_person(db, "p2") @ probe)) > 0.999
    assert compliance.key_rotations(db)["transform"]["by"] == "ops"
    audit.bind_key(db, None)


def test_doctor_warns_without_a_gates_key_and_fails_while_its_file_is_missing(
    tmp_path: Path, minimal_config: Path
) -> None:
    from gateway.cli.doctor import check_gates_key
    from gateway.config.root import load_config

    assert check_gates_key(load_config(minimal_config, env=False)).status == "WARN"
    gates = tmp_path / "gates-key"
    text = minimal_config.read_text()
    minimal_config.write_text(
        text.replace("[privacy]\n", f'[privacy]\ngates_key = {{ file = "{gates}" }}\n')
    )
    cfg = load_config(minimal_config, env=False)
    assert check_gates_key(cfg).status == "FAIL"  # configured, not written: the daemon refuses
    gates.write_bytes(svc.new_key_text())
    gates.chmod(0o600)
    assert check_gates_key(cfg).status == "PASS"
