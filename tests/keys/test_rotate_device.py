"""``gateway keys rotate --what device``: template keys re-wrapped in one transaction, card,
PIN and audit keys carried over, the old device key gone (file provider: a new 0600 key
file; TPM provider: a new sealed blob on swtpm)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.config.root import load_config
from gateway.errors import ConfigError
from gateway.keys import CARRIED, Keys, Purpose
from gateway.privacy import audit, compliance
from gateway.privacy.vault import Vault, VaultError
from gateway.services import keys as svc
from gateway.services.keys import load_keys
from gateway.store import database as store
from tests.conftest import built_gateway
from tests.keys.legacy import legacy_config, open_keyed
from tests.keys.rotation_checks import check_credentials, seal_to
from tests.support.swtpm import SoftTpm, running_swtpm, skip_reason


def _rotate(config: Path) -> None:
    from gateway.cli.main import main

    argv = ["--config", str(config), "keys", "rotate", "--what", "device", "--actor", "ops"]
    assert main(argv) == 0


def _state(db_path: Path) -> bytes:
    wal = db_path.with_name(db_path.name + "-wal")
    return db_path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def _check_gate(config: Path, raw: np.ndarray, old: Keys) -> Keys:
    """The gate after a rotation: same matches, same card/PIN/audit, old key unusable."""
    cfg = load_config(config, env=False)
    with store.connect(Path(cfg.storage.database_path)) as plain:
        keys = load_keys(cfg, plain.conn)
    assert keys.device != old.device
    assert set(keys.carried) == set(CARRIED)
    for purpose in CARRIED:
        assert keys.subkey(purpose) == old.subkey(purpose)
    assert keys.subkey(Purpose.TEMPLATE_WRAP) != old.subkey(Purpose.TEMPLATE_WRAP)
    db = open_keyed(Path(cfg.storage.database_path), keys)
    vault, before = Vault.from_keys(keys), Vault.from_keys(old)
    for i in range(len(raw)):
        scores = vault.load_person(db, f"p{i}") @ vault.transform(raw[i]).T
        np.testing.assert_allclose(np.diag(scores), 1.0, atol=1e-5)
    with pytest.raises(VaultError, match="wrapped by device key"):
        before.load_person(db, "p0")
    check_credentials(db, keys)
    assert compliance.key_rotations(db)["device"]["by"] == "ops"
    audit.bind_key(db, None)
    assert old.device not in _state(Path(cfg.storage.database_path))
    return keys


def test_file_device_key_rotation_keeps_every_credential_and_erases_the_old_key(
    tmp_path: Path, minimal_config: Path
) -> None:
    raw = legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    old = Keys.from_config(cfg)
    db = open_keyed(Path(cfg.storage.database_path), old)
    wrapped = [bytes(r[0]) for r in db.execute("SELECT wrapped_key FROM face_keys")]
    audit.bind_key(db, None)
    db.close()
    key_file = tmp_path / "legacy-keys" / "device"

    _rotate(minimal_config)

    assert key_file.stat().st_mode & 0o777 == 0o600
    assert not key_file.with_name("device.new").exists()
    assert old.device not in key_file.read_bytes()
    first = _check_gate(minimal_config, raw, old)
    state = _state(Path(cfg.storage.database_path))
    assert not any(w in state for w in wrapped)  # neither the DB nor its WAL keeps them

    _rotate(minimal_config)  # a second rotation carries the carried keys on
    _check_gate(minimal_config, raw, first)

    async def started() -> int:
        async with built_gateway(minimal_config) as gw:
            assert gw.vault is not None
            bound = audit.bound_key(gw.db)  # the daemon keys its audit chain with the carried key
            assert bound is not None
            assert bound.key == old.subkey(Purpose.AUDIT_CHAIN)
            assert gw.keys.subkey(Purpose.CARD_LOOKUP) == old.subkey(Purpose.CARD_LOOKUP)
            return len(gw.vault.load_person(gw.db, "p1"))

    assert asyncio.run(started()) == 3


needs_swtpm = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[SoftTpm]:
    """A fresh software TPM 2.0."""
    with running_swtpm(tmp_path / "swtpm") as tpm:
        yield tpm


@needs_swtpm
def test_tpm_device_key_rotation_seals_a_new_blob(
    swtpm: SoftTpm, tmp_path: Path, minimal_config: Path
) -> None:
    from gateway import tpm

    raw = legacy_config(tmp_path, minimal_config)
    device_file = tmp_path / "legacy-keys" / "device"
    base = load_config(minimal_config, env=False)
    old = Keys.from_config(base)
    blobs = seal_to(swtpm, tmp_path, minimal_config, device_file)
    cfg = load_config(minimal_config, env=False)
    sealed_before = tpm.read_blobs(cfg.keys)  # an attacker's copy of the old blob pair
    assert tpm.unseal(sealed_before, cfg.keys) == old.device

    _rotate(minimal_config)

    sealed_after = tpm.read_blobs(cfg.keys)
    assert sealed_after.private != sealed_before.private
    with pytest.raises(ConfigError) as exc:  # the old copy, on the same TPM
        tpm.unseal(sealed_before, cfg.keys)
    assert exc.value.problems[0][0] == "keys.private_blob"
    assert "NV counter" in exc.value.problems[0][2]
    _tpm_refuses_old_bound(sealed_before, cfg.keys)
    assert (blobs / "dk.priv").stat().st_mode & 0o777 == 0o600
    assert not (blobs / "dk.priv.new").exists()
    keys = _check_gate(minimal_config, raw, old)
    assert tpm.unseal(sealed_after, cfg.keys) == keys.device
    for name in ("dk.pub", "dk.priv"):
        assert old.device not in (blobs / name).read_bytes()
    assert keys.subkey(Purpose.TEMPLATE_WRAP) != old.subkey(Purpose.TEMPLATE_WRAP)


def _tpm_refuses_old_bound(sealed: object, keys_cfg: object) -> None:
    """Not only our policy matching: the TPM itself refuses the old blob's own policy
    (PolicyNV "counter <= its bound" with the bound it was sealed for)."""
    from gateway import tpm

    assert isinstance(sealed, tpm.SealedKey)
    with tpm._esapi(keys_cfg) as esys:  # type: ignore[arg-type]
        current = tpm._read_counter(esys, keys_cfg)  # type: ignore[arg-type]
    for bound in range(max(current - 3, 0), current):  # every earlier bound
        with pytest.raises(ConfigError):
            tpm._unseal(sealed, keys_cfg, lambda *_, b=bound: b)  # type: ignore[arg-type]


@needs_swtpm
def test_a_crash_between_the_two_blob_moves_is_finished_at_load(
    swtpm: SoftTpm, tmp_path: Path, minimal_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway import tpm

    raw = legacy_config(tmp_path, minimal_config)
    device_file = tmp_path / "legacy-keys" / "device"
    old = Keys.from_config(load_config(minimal_config, env=False))
    blobs = seal_to(swtpm, tmp_path, minimal_config, device_file)
    cfg = load_config(minimal_config, env=False)
    db = open_keyed(cfg.storage.database_path, old)
    keys = svc.load_keys(cfg, db.conn)
    sealed_before = tpm.read_blobs(cfg.keys)
    moved: list[Path] = []
    real = svc.commit_key_file

    def crash_after_one(staged: Path, target: Path) -> None:
        if moved:
            raise OSError("power cut")
        real(staged, target)
        moved.append(target)

    with monkeypatch.context() as m:
        m.setattr(svc, "commit_key_file", crash_after_one)
        with pytest.raises(OSError, match="power cut"):
            svc.rotate_device(db, keys, cfg, actor="t")
    audit.bind_key(db, None)
    assert len(moved) == 1  # one blob moved, the other still at .new

    assert tpm.unseal(sealed_before, cfg.keys) == old.device  # counter not advanced yet

    loaded = svc.load_keys(cfg, db.conn)

    with pytest.raises(ConfigError):  # finishing the rotation revoked the old blob too
        tpm.unseal(sealed_before, cfg.keys)
    assert not (blobs / "dk.pub.new").exists()
    assert not (blobs / "dk.priv.new").exists()
    assert loaded.device != old.device
    open_keyed(cfg.storage.database_path, loaded)
    assert len(Vault.from_keys(loaded).load_person(db, "p1")) == 3
    assert raw.shape[0] == 4
    audit.bind_key(db, None)
