"""The TPM's hierarchies and the NV counter's writer, on swtpm: ``gateway doctor`` warns on
empty lockout and owner auths; with ``keys.owner_auth`` the counter is owner-write, so a
process without the owner auth cannot advance it (the lock-out is closed); a missing or
wrong owner auth names the setting and never shows a secret."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli.doctor import check_keys, check_tpm_hierarchy, run_checks
from gateway.config.keys import KeysConfig
from gateway.config.root import GatewayConfig, load_config
from gateway.errors import ConfigError
from tests.conftest import write_secret
from tests.keys.rotation_checks import seal_to
from tests.support.swtpm import SoftTpm, running_swtpm, skip_reason

needs_swtpm = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))

OWNER = b"3f9c2a7e51b04d86a1c7e2f05b9d4c31"
LOCKOUT = b"lockout-9d41c7e2f05b3f9c2a7e51b0"


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[SoftTpm]:
    """A fresh software TPM 2.0 (started in well under a second)."""
    with running_swtpm(tmp_path / "swtpm") as tpm:
        yield tpm


def _secure(tpm: SoftTpm, *, owner: bytes = OWNER) -> None:
    """What the installer does: set the owner and lockout auths; and what the firmware
    does: disable the platform hierarchy."""
    from tpm2_pytss import ESAPI
    from tpm2_pytss.constants import ESYS_TR

    with ESAPI(tpm.tcti) as esys:
        esys.hierarchy_change_auth(ESYS_TR.OWNER, owner)
        esys.hierarchy_change_auth(ESYS_TR.LOCKOUT, LOCKOUT)
        esys.hierarchy_control(ESYS_TR.PLATFORM, ESYS_TR.PLATFORM, False)


def _tpm_config(config: Path, tpm: SoftTpm, tmp_path: Path, owner: Path | None) -> GatewayConfig:
    """The fixture's config with a [keys] section for ``tpm`` (bound to PCR 7), with
    ``keys.owner_auth`` read from ``owner`` when given."""
    text = "\n".join(ln for ln in config.read_text().splitlines() if "device_key" not in ln)
    config.write_text(
        f'{text}\n[keys]\nprovider = "tpm"\ntcti = "{tpm.tcti}"\npcrs = [7]\n'
        f'public_blob = "{tmp_path / "cred" / "dk.pub"}"\n'
        f'private_blob = "{tmp_path / "cred" / "dk.priv"}"\n'
        + (f'owner_auth = {{ file = "{owner}" }}\n' if owner is not None else "")
    )
    return load_config(config, env=False)


def _nv_attributes(tpm: SoftTpm, cfg: KeysConfig) -> tuple[int, int]:
    """The counter's attributes and value, read straight from the TPM."""
    from tpm2_pytss import ESAPI

    with ESAPI(tpm.tcti) as esys:
        handle = esys.tr_from_tpmpublic(cfg.nv_index)
        public, _ = esys.nv_read_public(handle)
        value = int.from_bytes(bytes(esys.nv_read(handle, 8, 0, handle)), "big")
    return int(public.nvPublic.attributes), value


def _only_problem(exc: pytest.ExceptionInfo[ConfigError]) -> tuple[str, str, str]:
    assert len(exc.value.problems) == 1
    return exc.value.problems[0]


@needs_swtpm
def test_doctor_warns_on_a_fresh_tpm_and_an_index_auth_counter(
    swtpm: SoftTpm, minimal_config: Path, tmp_path: Path
) -> None:
    device_file = tmp_path / "keys" / "device-key"
    seal_to(swtpm, tmp_path, minimal_config, device_file, pcrs="[7]")  # no owner auth
    cfg = load_config(minimal_config, env=False)
    rows = {c.name: c for c in run_checks(cfg, 0.2)}
    assert rows["device key"].status == "PASS"  # it unseals: the risk is the lock-out
    check = rows["TPM hierarchies"]
    assert check == check_tpm_hierarchy(cfg)
    assert check.status == "WARN"
    assert "the lockout auth is empty" in check.detail
    assert "can clear it (TPM2_Clear)" in check.detail
    assert "the owner auth is empty" in check.detail
    assert "advance or undefine the NV counter 0x1000a6e" in check.detail
    assert "keys.owner_auth" in check.detail
    assert "is written with its own empty auth" in check.detail
    assert "does not migrate an existing counter" in check.detail
    assert "platform hierarchy is enabled" in check.detail


@needs_swtpm
def test_with_owner_auth_the_counter_is_owner_write_and_the_lock_out_is_closed(
    swtpm: SoftTpm, minimal_config: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tpm2_pytss import ESAPI, TSS2_Exception
    from tpm2_pytss.constants import ESYS_TR, TPMA_NV

    from gateway import tpm

    caplog.set_level(logging.DEBUG)
    _secure(swtpm)
    owner = write_secret(tmp_path / "keys" / "owner-auth", OWNER)
    cfg = _tpm_config(minimal_config, swtpm, tmp_path, owner)
    key = secrets.token_bytes(32)
    sealed = tpm.seal(key, cfg.keys)
    tpm.write_blobs(sealed, cfg.keys)
    assert tpm.unseal(sealed, cfg.keys) == key
    before = tpm.advance(cfg.keys)
    assert not tpm.pending(sealed, cfg.keys)
    assert tpm.unseal(tpm.read_blobs(cfg.keys), cfg.keys) == key
    attrs, value = _nv_attributes(swtpm, cfg.keys)
    assert attrs & TPMA_NV.OWNERWRITE
    assert not attrs & TPMA_NV.AUTHWRITE
    assert attrs & TPMA_NV.AUTHREAD  # reading stays open: PolicyNV needs it
    assert value == before

    with ESAPI(swtpm.tcti) as esys:  # another process: no owner auth
        handle = esys.tr_from_tpmpublic(cfg.keys.nv_index)
        with pytest.raises(TSS2_Exception):  # its own (empty) auth no longer writes it
            esys.nv_increment(handle, handle)
        with pytest.raises(TSS2_Exception):  # nor the owner hierarchy without its auth
            esys.nv_increment(handle, auth_handle=ESYS_TR.OWNER)
        with pytest.raises(TSS2_Exception):
            esys.nv_undefine_space(handle)
    assert _nv_attributes(swtpm, cfg.keys)[1] == before
    assert tpm.unseal(tpm.read_blobs(cfg.keys), cfg.keys) == key

    check = check_tpm_hierarchy(cfg)
    assert (check.status, check.detail) == (
        "PASS",
        "lockout and owner auths set, platform hierarchy disabled, NV counter owner-write",
    )
    assert check_keys(cfg).status == "PASS"
    assert OWNER.decode() not in caplog.text
    owner.chmod(0o640)
    check = check_tpm_hierarchy(cfg)
    assert check.status == "WARN"
    assert "keys.owner_auth is readable by other users (mode 640)" in check.detail


@needs_swtpm
def test_a_missing_or_wrong_owner_auth_names_the_setting_and_no_secret(
    swtpm: SoftTpm, minimal_config: Path, tmp_path: Path
) -> None:
    from gateway import tpm

    _secure(swtpm)
    owner = write_secret(tmp_path / "keys" / "owner-auth", OWNER)
    cfg = _tpm_config(minimal_config, swtpm, tmp_path, owner)
    key = secrets.token_bytes(32)
    sealed = tpm.seal(key, cfg.keys)  # defines the owner-write counter
    tpm.write_blobs(sealed, cfg.keys)
    tpm.advance(cfg.keys)

    unset = cfg.keys.model_copy(update={"owner_auth": None})
    for call in (lambda: tpm.unseal(sealed, unset), lambda: tpm.advance(unset)):
        with pytest.raises(ConfigError) as exc:
            call()
        path, value, message = _only_problem(exc)
        assert (path, value) == ("keys.owner_auth", "unset")
        assert "has an auth value and the gateway has none" in message

    wrong = b"not-the-owner-auth-of-this-tpm-0"
    write_secret(owner, wrong)
    for call in (lambda: tpm.seal(key, cfg.keys), lambda: tpm.advance(cfg.keys)):
        with pytest.raises(ConfigError) as exc:
            call()
        path, value, message = _only_problem(exc)
        assert (path, value) == ("keys.owner_auth", str(owner))
        assert "refuses the configured owner auth value" in message
        for secret in (OWNER, wrong):
            assert secret.decode() not in str(exc.value.problems)
    check = check_keys(cfg)
    assert check.status == "FAIL"
    assert "keys.owner_auth" in check.detail
    assert wrong.decode() not in check.detail

    owner.unlink()
    with pytest.raises(ConfigError) as exc:
        tpm.unseal(sealed, cfg.keys)
    assert _only_problem(exc)[:2] == ("keys.owner_auth", str(owner))


@needs_swtpm
def test_an_owner_auth_the_tpm_does_not_have_is_refused(swtpm: SoftTpm, tmp_path: Path) -> None:
    from gateway import tpm

    owner = write_secret(tmp_path / "owner-auth", OWNER)
    cfg = KeysConfig(
        provider="tpm",
        tcti=swtpm.tcti,
        owner_auth={"file": owner},  # type: ignore[arg-type]
        public_blob=tmp_path / "dk.pub",
        private_blob=tmp_path / "dk.priv",
    )
    with pytest.raises(ConfigError) as exc:
        tpm.seal(secrets.token_bytes(32), cfg)
    path, _, message = _only_problem(exc)
    assert path == "keys.owner_auth"
    assert "has no auth value" in message
    assert OWNER.decode() not in message


@needs_swtpm
def test_an_existing_index_auth_counter_keeps_working_under_an_owner_auth(
    swtpm: SoftTpm, minimal_config: Path, tmp_path: Path
) -> None:
    from tpm2_pytss import ESAPI
    from tpm2_pytss.constants import ESYS_TR, TPMA_NV

    from gateway import tpm

    device_file = tmp_path / "keys" / "device-key"
    key = device_file.read_bytes()
    seal_to(swtpm, tmp_path, minimal_config, device_file, pcrs="[7]")  # index-auth counter
    _secure(swtpm)
    owner = write_secret(tmp_path / "owner-auth", OWNER)
    with minimal_config.open("a") as f:  # [keys] is the config's last section
        f.write(f'owner_auth = {{ file = "{owner}" }}\n')
    cfg = load_config(minimal_config, env=False)
    old = tpm.read_blobs(cfg.keys)
    assert tpm.unseal(old, cfg.keys) == key
    new = tpm.seal(key, cfg.keys)
    tpm.advance(cfg.keys)
    assert tpm.unseal(new, cfg.keys) == key
    with pytest.raises(ConfigError):  # the counter still revokes older blobs
        tpm.unseal(old, cfg.keys)
    assert _nv_attributes(swtpm, cfg.keys)[0] & TPMA_NV.AUTHWRITE  # not migrated
    check = check_tpm_hierarchy(cfg)
    assert check.status == "WARN"
    assert "is written with its own empty auth" in check.detail
    assert "lockout" not in check.detail
    assert "owner auth is empty" not in check.detail

    with ESAPI(swtpm.tcti) as esys:  # the doctor's way out: undefine with the owner auth...
        esys.tr_set_auth(ESYS_TR.OWNER, OWNER)
        esys.nv_undefine_space(esys.tr_from_tpmpublic(cfg.keys.nv_index))
    resealed = tpm.seal(key, cfg.keys)  # ...and seal again from the key file
    tpm.advance(cfg.keys)
    assert tpm.unseal(resealed, cfg.keys) == key
    assert _nv_attributes(swtpm, cfg.keys)[0] & TPMA_NV.OWNERWRITE
    assert check_tpm_hierarchy(cfg).status == "PASS"


def test_owner_auth_needs_the_tpm_provider(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="applies only with provider"):
        KeysConfig(owner_auth={"file": tmp_path / "owner"})  # type: ignore[arg-type]
