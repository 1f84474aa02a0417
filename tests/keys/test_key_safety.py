"""The site key stands in for the gates key only on a gate that has none: a configured gates
key that cannot be read, a gates key equal to another root, or a database that records a
gates key are refused, never a silent return to the site key."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway.config.base import SecretRef
from gateway.config.root import load_config
from gateway.errors import ConfigError, GatewayError
from gateway.keys import Keys, key_id
from gateway.privacy import audit
from gateway.services import keys as svc
from tests.conftest import write_secret
from tests.keys.legacy import legacy, legacy_config, open_keyed


def _with_gates(tmp_path: Path, minimal_config: Path, gates: Path) -> None:
    legacy_config(tmp_path, minimal_config, f'gates_key = {{ file = "{gates}" }}\n')


def test_a_configured_gates_key_that_is_missing_is_an_error(
    tmp_path: Path, minimal_config: Path
) -> None:
    _with_gates(tmp_path, minimal_config, tmp_path / "nowhere" / "gates")
    cfg = load_config(minimal_config, env=False)
    with pytest.raises(ConfigError, match=r"privacy\.gates_key"):
        Keys.from_config(cfg)
    from gateway.cli.doctor import check_gates_key
    from gateway.cli.environment_checks import secret_problems

    assert check_gates_key(cfg).status == "FAIL"  # doctor says what the daemon will refuse
    assert any(p[0] == "privacy.gates_key" for p in secret_problems(cfg))


def test_a_gates_key_equal_to_the_site_or_device_key_is_refused(
    tmp_path: Path, minimal_config: Path
) -> None:
    gates = tmp_path / "gates"
    _with_gates(tmp_path, minimal_config, gates)
    cfg = load_config(minimal_config, env=False)
    _, keys, _ = legacy(tmp_path)
    for same in (keys.site, keys.device):
        write_secret(gates, same)
        with pytest.raises(ConfigError, match="must differ"):
            Keys.from_config(cfg)


def test_rotating_to_the_site_key_is_refused(tmp_path: Path) -> None:
    path, keys, _ = legacy(tmp_path)
    db = open_keyed(path, keys)
    target = tmp_path / "gates-key"
    for same in (keys.site, keys.device):
        with pytest.raises(svc.RotationError, match="must differ"):
            svc.rotate_transform(db, keys, SecretRef(file=target), actor="t", new_key=same)
    assert not target.exists()
    audit.bind_key(db, None)


def test_a_database_with_a_gates_key_refuses_the_site_key_in_its_place(
    tmp_path: Path, minimal_config: Path
) -> None:
    legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    keys = Keys.from_config(cfg)
    db = open_keyed(Path(cfg.storage.database_path), keys)
    gates = tmp_path / "gates-key"
    svc.rotate_transform(db, keys, SecretRef(file=gates), actor="t")
    assert svc.kv_value(db.conn, svc.GATES_ID_KV) == key_id(SecretRef(file=gates).read_bytes())
    with pytest.raises(ConfigError, match=r"privacy\.gates_key"):
        svc.load_keys(cfg, db.conn)  # the config lost its gates_key: no return to the site key
    audit.bind_key(db, None)

    from gateway.cli import context as ctx

    args = argparse.Namespace(
        config=None,
        db=Path(cfg.storage.database_path),
        device_key=tmp_path / "legacy-keys" / "device",
        site_key=tmp_path / "legacy-keys" / "site",
        gates_key=None,
    )
    with pytest.raises(ConfigError, match=r"privacy\.gates_key"):
        ctx.keys_of(args)
    with pytest.raises(ConfigError, match=r"privacy\.gates_key"):
        ctx.gates_root(args)
    args.gates_key = gates
    assert ctx.keys_of(args).gates == SecretRef(file=gates).read_bytes()


def test_cli_key_flags_do_not_drop_a_configured_gates_key(
    tmp_path: Path, minimal_config: Path
) -> None:
    gates = write_secret(tmp_path / "gates", b"g" * 32)
    _with_gates(tmp_path, minimal_config, gates)
    from gateway.cli import context as ctx

    args = argparse.Namespace(
        config=minimal_config,
        db=None,
        device_key=tmp_path / "legacy-keys" / "device",
        site_key=tmp_path / "legacy-keys" / "site",
        gates_key=None,
    )
    with pytest.raises(GatewayError, match="--gates-key"):
        ctx.keys_of(args)
    args.gates_key = gates
    assert ctx.keys_of(args).gates == b"g" * 32


def test_rotation_is_refused_while_the_daemon_holds_the_state_lock(
    tmp_path: Path, minimal_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli.main import main
    from gateway.keys import StateLockedError, state_lock

    legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    before = Path(cfg.storage.database_path).read_bytes()
    argv = ["--config", str(minimal_config), "keys", "rotate", "--what", "device"]
    with state_lock(cfg.storage.state_dir) as held:  # what the running daemon holds
        assert held
        assert main(argv) != 0
        assert "stop the daemon first" in capsys.readouterr().err
        with pytest.raises(StateLockedError), state_lock(cfg.storage.state_dir):
            pass  # a second daemon is kept out too
    assert Path(cfg.storage.database_path).read_bytes() == before
    assert main(argv) == 0  # once the daemon is stopped


def _crash_after_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(staged: Path, target: Path) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(svc, "commit_key_file", crash)


@pytest.mark.parametrize("what", ["transform", "device"])
def test_a_crash_between_commit_and_key_move_is_finished_at_load(
    tmp_path: Path, minimal_config: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    gates = tmp_path / "legacy-keys" / "gates"
    if what == "transform":  # configured, written by the rotation
        _with_gates(tmp_path, minimal_config, gates)
    else:
        legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    keys = Keys.from_config(cfg, gates_optional=True)
    db = open_keyed(Path(cfg.storage.database_path), keys)
    keys = svc.load_keys(cfg, db.conn, gates_optional=True)
    target = gates if what == "transform" else tmp_path / "legacy-keys" / "device"
    old = target.read_bytes() if target.exists() else None
    with monkeypatch.context() as m:
        _crash_after_commit(m)
        rotate = (
            (lambda: svc.rotate_transform(db, keys, SecretRef(file=gates), actor="t"))
            if what == "transform"
            else (lambda: svc.rotate_device(db, keys, cfg, actor="t"))
        )
        with pytest.raises(OSError, match="power cut"):
            rotate()
    audit.bind_key(db, None)
    staged = target.with_name(target.name + ".new")
    crashed = target.read_bytes() if target.exists() else None  # the crash's state: the old
    assert (crashed is None) == (old is None)  # key, or its file already overwritten,
    assert crashed != staged.read_bytes()  # never the new key yet
    kv_name = svc.GATES_ID_KV if what == "transform" else svc.DEVICE_ID_KV
    with pytest.raises(svc.RotationError, match="interrupted"):  # .new is never dropped
        svc.stage_key_file(target, b"x" * 64, svc.kv_value(db.conn, kv_name))
    assert staged.exists()

    loaded = svc.load_keys(cfg, db.conn)  # what the daemon does at start

    assert not staged.exists()
    new = SecretRef(file=target).read_bytes()
    assert new != old
    assert (loaded.gates if what == "transform" else loaded.device) == new
    from gateway.privacy.vault import Vault

    open_keyed(Path(cfg.storage.database_path), loaded)
    Vault.from_keys(loaded).load_person(db, "p1")  # the templates open with the moved key
    audit.bind_key(db, None)


def test_a_key_file_that_is_not_the_recorded_one_refuses_to_load(
    tmp_path: Path, minimal_config: Path
) -> None:
    gates = tmp_path / "legacy-keys" / "gates"
    _with_gates(tmp_path, minimal_config, gates)
    cfg = load_config(minimal_config, env=False)
    keys = Keys.from_config(cfg, gates_optional=True)
    db = open_keyed(Path(cfg.storage.database_path), keys)
    svc.rotate_transform(db, keys, SecretRef(file=gates), actor="t")
    audit.bind_key(db, None)
    write_secret(gates, b"h" * 32)  # an old copy put back, say
    with pytest.raises(ConfigError, match=r"privacy\.gates_key.*gates\.new"):
        svc.load_keys(cfg, db.conn)


def test_carried_keys_missing_after_a_device_rotation_are_refused(tmp_path: Path) -> None:
    path, keys, _ = legacy(tmp_path)
    db = open_keyed(path, keys)
    assert svc.read_carried(db.conn, keys.device) == {}  # never rotated: nothing carried
    db.execute("INSERT INTO kv (key, value) VALUES (?, ?)", [svc.DEVICE_ID_KV, "00"])
    with pytest.raises(ConfigError, match=r"keys\.carried"):
        svc.read_carried(db.conn, keys.device)
    audit.bind_key(db, None)
