"""Issue #20's acceptance on a software TPM: the daemon starts with a device key sealed (bound
to a PCR) to swtpm; a copy of the whole database, the key blobs, the config and the key files
on another TPM decrypts nothing; after the rotation of every key the gate still recognises
its faces, cards and PINs, its audit chain verifies, and no earlier device key is left in the
database, its WAL or the credentials directory."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.cli.doctor import check_keys
from gateway.config.root import GatewayConfig, load_config
from gateway.credentials.store import Credentials
from gateway.errors import ConfigError
from gateway.keys import Keys
from gateway.privacy.vault import Vault, VaultError
from gateway.store import database as store
from tests.conftest import built_gateway
from tests.keys.legacy import legacy_config
from tests.keys.rotation_checks import Card, on_disk, rotate, seal_to, still_works
from tests.support.swtpm import SoftTpm, running_swtpm, skip_reason

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))

ROTATIONS = ("transform", "device", "audit", "access-log", "card", "pin", "pseudonym")


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[SoftTpm]:
    """The gate's software TPM 2.0."""
    with running_swtpm(tmp_path / "swtpm-a") as tpm:
        yield tpm


def _sealed_gate(swtpm: SoftTpm, tmp_path: Path, config: Path) -> tuple[np.ndarray, Keys]:
    """The legacy gate, its device key sealed to ``swtpm`` bound to PCR 7 (the clear file
    removed), with a gates key to be written by the transform rotation."""
    gates = tmp_path / "legacy-keys" / "gates"
    raw = legacy_config(tmp_path, config, f'gates_key = {{ file = "{gates}" }}\n')
    device_file = tmp_path / "legacy-keys" / "device"
    old = Keys.from_config(load_config(config, env=False), gates_optional=True)
    seal_to(swtpm, tmp_path, config, device_file, pcrs="[7]")
    assert not device_file.exists()
    return raw, old


def _copy_elsewhere(tmp_path: Path, config: Path, other: SoftTpm, swtpm: SoftTpm) -> Path:
    """The whole gate (state directory, blobs, key files, config) copied to another
    machine whose TPM is ``other``; the copy's config."""
    copy = tmp_path / "copy"
    for name in ("state", "cred", "legacy-keys"):
        shutil.copytree(tmp_path / name, copy / name)
    text = config.read_text().replace(str(tmp_path / "state"), str(copy / "state"))
    text = text.replace(str(tmp_path / "cred"), str(copy / "cred"))
    text = text.replace(str(tmp_path / "legacy-keys"), str(copy / "legacy-keys"))
    target = copy / "gateway.toml"
    target.write_text(text.replace(swtpm.tcti, other.tcti))
    return target


def _nothing_decrypts(cfg: GatewayConfig, raw: np.ndarray, keys: Keys) -> None:
    """The copy's templates and cards, with every key but the sealed device key."""
    with pytest.raises(ConfigError) as exc:
        Keys.from_config(cfg)
    assert exc.value.problems[0][0] == "keys.private_blob"
    assert check_keys(cfg).status == "FAIL"
    guessed = Keys(secrets.token_bytes(32), keys.site, keys.gates)  # the site and gates keys
    db = store.connect(Path(cfg.storage.database_path))
    try:
        with pytest.raises(VaultError):
            Vault.from_keys(guessed).load_person(db, "p1")
        creds = Credentials(db, guessed.device, index_key=guessed.pin_index_site)
        assert creds.identify_card(Card()) is None
    finally:
        db.close()
    disk = on_disk(cfg, Path(cfg.storage.database_path).parent)
    site_space = Vault.from_keys(keys).transform(raw.reshape(-1, raw.shape[-1]))
    for vec in (*raw.reshape(-1, raw.shape[-1]), *site_space):
        assert np.asarray(vec, np.float32).tobytes()[:32] not in disk


def test_tpm_sealed_gate_rotates_every_key_and_a_copy_decrypts_nothing(
    swtpm: SoftTpm, tmp_path: Path, minimal_config: Path
) -> None:
    raw, first = _sealed_gate(swtpm, tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    doctor = check_keys(cfg)
    assert doctor.status == "PASS", doctor.detail
    assert "PCRs sha256:[7]" in doctor.detail

    seen = {first.device}
    for what in ROTATIONS:
        rotate(minimal_config, what)
        keys = still_works(cfg, raw, what)
        disk = on_disk(cfg, tmp_path / "cred", tmp_path / "legacy-keys")
        for earlier in seen - {keys.device}:
            assert earlier not in disk
        seen.add(keys.device)
    assert len(seen) == 6  # the transform and pseudonym rotations keep the device key

    async def daemon_keys() -> tuple[bytes, int]:
        async with built_gateway(minimal_config) as gw:
            return gw.keys.device, len(gw.vault.load_person(gw.db, "p1"))

    assert asyncio.run(daemon_keys()) == (keys.device, 3)  # unsealed by the TPM at start

    with running_swtpm(tmp_path / "swtpm-b") as other:
        copy = load_config(_copy_elsewhere(tmp_path, minimal_config, other, swtpm), env=False)
        _nothing_decrypts(copy, raw, keys)
