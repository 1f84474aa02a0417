"""The TPM 2.0 key provider against a real software TPM (swtpm): seal, unseal, the daemon's
keys, a blob copied to another TPM, a PCR policy, a wrong TCTI, and the CLI and doctor."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config.keys import KeysConfig
from gateway.config.root import load_config
from gateway.errors import ConfigError
from tests.conftest import built_gateway
from tests.support.swtpm import SoftTpm, running_swtpm, skip_reason

needs_swtpm = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[SoftTpm]:
    """A fresh software TPM 2.0 on free loopback ports, started up, stopped afterwards."""
    with running_swtpm(tmp_path / "swtpm-a") as tpm:
        yield tpm


def _keys(tpm: SoftTpm, tmp_path: Path, **extra: object) -> KeysConfig:
    return KeysConfig(
        provider="tpm",
        tcti=tpm.tcti,
        public_blob=tmp_path / "cred" / "device-key.tpm.pub",
        private_blob=tmp_path / "cred" / "device-key.tpm.priv",
        **extra,  # type: ignore[arg-type]
    )


def _only_problem(exc: pytest.ExceptionInfo[ConfigError]) -> tuple[str, str, str]:
    assert len(exc.value.problems) == 1
    return exc.value.problems[0]


@needs_swtpm
def test_seal_then_unseal_gives_the_key(swtpm: SoftTpm, tmp_path: Path) -> None:
    from gateway import tpm

    cfg = _keys(swtpm, tmp_path)
    key = secrets.token_bytes(32)
    sealed = tpm.seal(key, cfg)
    assert key not in sealed.public
    assert key not in sealed.private
    tpm.write_blobs(sealed, cfg)
    assert cfg.private_blob.stat().st_mode & 0o077 == 0
    assert tpm.unseal(tpm.read_blobs(cfg), cfg) == key
    assert tpm.unseal(tpm.read_blobs(cfg), cfg) == key  # handles flushed: it repeats


@needs_swtpm
def test_blob_copied_to_another_tpm_does_not_unseal(swtpm: SoftTpm, tmp_path: Path) -> None:
    from gateway import tpm

    key = secrets.token_bytes(32)
    sealed = tpm.seal(key, _keys(swtpm, tmp_path))
    with running_swtpm(tmp_path / "swtpm-b") as other, pytest.raises(ConfigError) as exc:
        tpm.unseal(sealed, _keys(other, tmp_path))
    path, _, message = _only_problem(exc)
    assert path == "keys.private_blob"
    assert "does not load on this TPM" in message
    assert "another TPM" in message


@needs_swtpm
def test_a_new_seal_revokes_every_older_blob_on_the_same_tpm(
    swtpm: SoftTpm, tmp_path: Path
) -> None:
    from gateway import tpm

    cfg = _keys(swtpm, tmp_path)
    first, second = secrets.token_bytes(32), secrets.token_bytes(32)
    old = tpm.seal(first, cfg)
    tpm.advance(cfg)
    assert tpm.unseal(old, cfg) == first
    new = tpm.seal(second, cfg)  # sealed for the counter's next value
    assert tpm.pending(new, cfg)
    assert tpm.unseal(new, cfg) == second
    assert tpm.unseal(old, cfg) == first  # until the counter moves: a crash keeps both
    tpm.advance(cfg)
    assert not tpm.pending(new, cfg)
    assert tpm.unseal(new, cfg) == second
    with pytest.raises(ConfigError) as exc:
        tpm.unseal(old, cfg)
    path, value, message = _only_problem(exc)
    assert (path, value) == ("keys.private_blob", str(cfg.private_blob))
    assert "NV counter 0x1000a6e moved past it" in message
    with tpm._esapi(cfg) as esys:
        current = tpm._read_counter(esys, cfg)
    with pytest.raises(ConfigError):  # the TPM itself: PolicyNV with the old blob's bound
        tpm._unseal(old, cfg, lambda *_: current - 1)
    assert not tpm.pcr_bound(new, cfg)


def _seal_before_the_counter(key: bytes, cfg: KeysConfig) -> object:
    """A blob as the provider sealed it before the NV counter: user auth and no policy, or
    (PCRs configured) a PolicyPCR alone."""
    from gateway import tpm

    tss = tpm._tss()
    with tpm._esapi(cfg) as esys:
        primary = tpm._primary(esys)
        attrs = tss.TPMA_OBJECT.FIXEDTPM | tss.TPMA_OBJECT.FIXEDPARENT | tss.TPMA_OBJECT.NODA
        if not cfg.pcrs:
            attrs |= tss.TPMA_OBJECT.USERWITHAUTH
        template = tss.TPM2B_PUBLIC.parse("keyedhash", objectAttributes=attrs)
        if cfg.pcrs:
            template.publicArea.authPolicy = tpm._policy_digest(esys, cfg, None)
        sensitive = tss.TPM2B_SENSITIVE_CREATE()
        sensitive.sensitive.data = key
        private, public, *_ = esys.create(primary, sensitive, template)
        esys.flush_context(primary)
    return tpm.SealedKey(public=bytes(public.marshal()), private=bytes(private.marshal()))


@needs_swtpm
def test_a_blob_sealed_before_the_counter_still_opens(swtpm: SoftTpm, tmp_path: Path) -> None:
    from gateway import tpm

    cfg = _keys(swtpm, tmp_path)
    key = secrets.token_bytes(32)
    legacy = _seal_before_the_counter(key, cfg)
    assert isinstance(legacy, tpm.SealedKey)
    assert tpm.unseal(legacy, cfg) == key  # no NV counter defined yet
    assert not tpm.pending(legacy, cfg)
    assert not tpm.pcr_bound(legacy, cfg)
    pcr_cfg = _keys(swtpm, tmp_path, pcrs=[7])
    legacy_pcr = _seal_before_the_counter(key, pcr_cfg)  # PolicyPCR only, no counter
    assert isinstance(legacy_pcr, tpm.SealedKey)
    assert tpm.pcr_bound(legacy_pcr, pcr_cfg)
    assert tpm.unseal(legacy_pcr, pcr_cfg) == key


@needs_swtpm
def test_pcr_bound_seal_fails_after_a_pcr_extend(swtpm: SoftTpm, tmp_path: Path) -> None:
    from gateway import tpm

    cfg = _keys(swtpm, tmp_path, pcrs=[7, 16])
    key = secrets.token_bytes(48)
    sealed = tpm.seal(key, cfg)
    assert tpm.unseal(sealed, cfg) == key
    assert tpm.pcr_bound(sealed, cfg)
    swtpm.extend_pcr(16)
    with pytest.raises(ConfigError) as exc:
        tpm.unseal(sealed, cfg)
    path, value, message = _only_problem(exc)
    assert (path, value) == ("keys.pcrs", "[7, 16]")
    assert "sha256:7,16" in message
    assert "re-seal" in message
    unbound = _keys(swtpm, tmp_path)  # the same key sealed without a policy still opens
    assert tpm.unseal(tpm.seal(key, unbound), unbound) == key


@needs_swtpm
@pytest.mark.parametrize("tcti", ["swtpm:host=127.0.0.1,port=1", "nosuchtcti:whatever"])
def test_wrong_tcti_names_the_setting(tcti: str, tmp_path: Path) -> None:
    from gateway import tpm

    cfg = KeysConfig(provider="tpm", tcti=tcti)
    with pytest.raises(ConfigError) as exc:
        tpm.seal(secrets.token_bytes(32), cfg)
    path, value, message = _only_problem(exc)
    assert (path, value) == ("keys.tcti", tcti)
    assert "cannot open the TPM" in message


def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import tpm

    monkeypatch.setitem(sys.modules, "tpm2_pytss", None)  # import fails as if not installed
    with pytest.raises(ConfigError) as exc:
        tpm.seal(secrets.token_bytes(32), KeysConfig(provider="tpm"))
    path, _, message = _only_problem(exc)
    assert path == "keys.provider"
    assert "tpm2-pytss" in message
    assert "'tpm' extra" in message
    assert "libtss2-dev" in message


def test_missing_blob_names_the_setting(minimal_config: Path, tmp_path: Path) -> None:
    from gateway.cli.environment_checks import environment_problems
    from gateway.cli.main import main

    text = "\n".join(ln for ln in minimal_config.read_text().splitlines() if "device_key" not in ln)
    missing = tmp_path / "nope.pub"
    minimal_config.write_text(text + f'\n[keys]\nprovider = "tpm"\npublic_blob = "{missing}"\n')
    cfg = load_config(minimal_config, env=False)
    assert [p for p, _, _ in environment_problems(cfg)] == ["keys.public_blob"]
    assert main(["--config", str(minimal_config), "config", "validate", "--deep"]) == 2


def _with_keys_section(config: Path, tpm: SoftTpm, tmp_path: Path, *, provider: str) -> None:
    """The fixture's config (kept beside it) plus a [keys] section for ``tpm``."""
    original = config.with_suffix(".orig")
    if not original.exists():
        original.write_text(config.read_text())
    text = original.read_text()
    if provider == "tpm":
        text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("device_key"))
    config.write_text(
        text
        + f'\n[keys]\nprovider = "{provider}"\ntcti = "{tpm.tcti}"\n'
        + f'public_blob = "{tmp_path / "cred" / "dk.pub"}"\n'
        + f'private_blob = "{tmp_path / "cred" / "dk.priv"}"\n'
    )


@needs_swtpm
def test_cli_seal_then_the_daemon_loads_its_keys_from_the_tpm(
    swtpm: SoftTpm, minimal_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli.doctor import check_keys
    from gateway.cli.environment_checks import environment_problems
    from gateway.cli.main import main

    clear = tmp_path / "keys" / "device-key"
    key = clear.read_bytes()
    _with_keys_section(minimal_config, swtpm, tmp_path, provider="file")
    cfg = load_config(minimal_config, env=False)
    assert check_keys(cfg).status == "WARN"
    assert "in clear" in check_keys(cfg).detail

    argv = ["--config", str(minimal_config), "keys", "seal", "--from", str(clear)]
    assert main([*argv, "--remove-clear"]) == 0
    assert not clear.exists()
    out = capsys.readouterr().out
    assert "sealed the device key" in out
    assert "removed the clear key file" in out
    assert main(argv) == 2  # nothing to read now: an error naming the file, no blob touched
    assert "device-key" in capsys.readouterr().err

    _with_keys_section(minimal_config, swtpm, tmp_path, provider="tpm")
    cfg = load_config(minimal_config, env=False)
    assert cfg.privacy.device_key is None
    assert environment_problems(cfg) == []
    check = check_keys(cfg)
    assert check.status == "WARN"  # unsealed, but the seal is bound to no PCR
    assert "tpm provider" in check.detail
    assert swtpm.tcti in check.detail
    assert "not bound to PCRs" in check.detail

    async def device_key() -> bytes:
        async with built_gateway(minimal_config) as gw:
            return bytes(gw.keys.device)

    assert asyncio.run(device_key()) == key


@needs_swtpm
def test_cli_init_seals_a_fresh_key_and_keeps_existing_blobs(
    swtpm: SoftTpm, minimal_config: Path, tmp_path: Path
) -> None:
    from gateway.cli.main import main
    from gateway.keys import device_key_provider

    _with_keys_section(minimal_config, swtpm, tmp_path, provider="tpm")
    argv = ["--config", str(minimal_config), "keys", "init", "--provider", "tpm"]
    assert main(argv) == 0
    cfg = load_config(minimal_config, env=False)
    first = device_key_provider(cfg).device_key()
    assert len(first) == 32
    assert main(argv) == 2  # the blobs hold the key of every template: never replaced silently
    assert device_key_provider(cfg).device_key() == first
    from gateway import tpm

    copy = tpm.read_blobs(cfg.keys)
    assert main([*argv, "--force"]) == 0
    assert device_key_provider(cfg).device_key() != first
    with pytest.raises(ConfigError):  # the replaced blob's copy: revoked by the NV counter
        tpm.unseal(copy, cfg.keys)


def test_tpm_provider_with_a_clear_device_key_is_refused(minimal_config: Path) -> None:
    minimal_config.write_text(minimal_config.read_text() + '\n[keys]\nprovider = "tpm"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(minimal_config, env=False)
    path, _, message = _only_problem(exc)
    assert path == "privacy.device_key"
    assert "sealed to the TPM" in message


def test_config_rejects_bad_pcrs_and_tcti(minimal_config: Path) -> None:
    base = minimal_config.read_text()
    minimal_config.write_text(base + '\n[keys]\npcrs = [24]\ntcti = "dev ice"\nfoo = 1\n')
    with pytest.raises(ConfigError) as exc:
        load_config(minimal_config, env=False)
    paths = sorted(p for p, _, _ in exc.value.problems)
    assert paths == ["keys.foo", "keys.pcrs.0", "keys.tcti"]
