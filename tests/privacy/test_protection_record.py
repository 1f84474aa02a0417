"""The template protection mode in use: recorded at the first enrolment, named by ``gateway
doctor`` and the compliance report; a switch of mode over stored templates is refused (the
daemon does not start, doctor FAILs, enrolment and rotation refuse) instead of skipping
every template at the gallery load; ``gateway keys erase-templates`` is the way to switch."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from gateway.cli.doctor import check_template_protection
from gateway.config.base import SecretRef
from gateway.config.root import load_config
from gateway.errors import ConfigError
from gateway.face.protection import Mode
from gateway.keys import Keys, Purpose
from gateway.privacy import audit, compliance, people, protection_record
from gateway.privacy.vault import Vault, VaultError
from gateway.store import database as store
from tests.conftest import built_gateway

from .conftest import random_embedding


def _enrol(db: sqlite_utils.Database, keys: Keys, mode: Mode, name: str) -> None:
    pid = people.add_person(db, name, unit="1-1", role="resident")
    Vault.from_keys(keys, protection=mode).store_templates(
        db, pid, np.stack([random_embedding(i) for i in range(2)]), model="m"
    )


@pytest.mark.parametrize("mode", ["orthogonal", "cancelable"])
def test_first_enrolment_records_the_mode_a_mismatch_is_refused(
    db: sqlite_utils.Database, mode: Mode
) -> None:
    keys = Keys(device=secrets.token_bytes(32), site=secrets.token_bytes(32))
    other: Mode = "cancelable" if mode == "orthogonal" else "orthogonal"
    assert protection_record.stored_mode(db.conn) is None
    _enrol(db, keys, mode, "A")
    assert protection_record.stored_mode(db.conn) == mode
    db.conn.execute("DELETE FROM kv WHERE key = ?", (protection_record.MODE_KV,))
    assert protection_record.stored_mode(db.conn) == mode  # a database from before: by width
    assert protection_record.mismatch(db.conn, mode) is None
    with pytest.raises(VaultError) as exc:
        _enrol(db, keys, other, "B")  # never a gallery of two modes
    message = str(exc.value)
    assert f"template_protection = '{mode}'" in message
    assert "2 stored templates" in message
    assert "gateway keys erase-templates --yes" in message
    assert protection_record.template_count(db.conn) == 2


def _gate_with_templates(minimal_config: Path) -> Path:
    """A gate whose database holds orthogonal templates, its config switched to cancelable."""
    cfg = load_config(minimal_config, env=False)
    keys = Keys.from_config(cfg)
    db = store.connect(Path(cfg.storage.database_path))
    audit.bind_key(db, audit.ChainKey(keys.subkey(Purpose.AUDIT_CHAIN)))
    try:
        _enrol(db, keys, "orthogonal", "A")
    finally:
        audit.bind_key(db, None)
        db.close()
    text = minimal_config.read_text()
    assert "[privacy]\n" in text
    minimal_config.write_text(
        text.replace("[privacy]\n", '[privacy]\ntemplate_protection = "cancelable"\n')
    )
    return minimal_config


def _report(path: Path, mode: Mode) -> dict[str, object]:
    db = store.connect(path)
    try:
        report = compliance.compliance_report(
            db, gate="g1", today=dt.date(2026, 1, 5), template_protection=mode
        )
        assert f"template protection: {mode}" in compliance.format_report(report)
        return dict(report["template_protection"])
    finally:
        db.close()


def test_switching_mode_over_templates_fails_doctor_and_start_until_erased(
    minimal_config: Path,
) -> None:
    from gateway.cli.main import main

    config = _gate_with_templates(minimal_config)
    cfg = load_config(config, env=False)
    doctor = check_template_protection(cfg)
    assert doctor.status == "FAIL"
    assert "template_protection = 'orthogonal'" in doctor.detail
    report = _report(Path(cfg.storage.database_path), "cancelable")
    assert (report["configured"], report["stored"], report["templates"]) == (
        "cancelable",
        "orthogonal",
        2,
    )
    assert "re-enrol" in str(report["problem"])

    async def start() -> None:
        async with built_gateway(config):
            pass

    with pytest.raises(ConfigError) as exc:
        asyncio.run(start())
    assert exc.value.problems[0][0] == "privacy.template_protection"

    assert main(["--config", str(config), "keys", "erase-templates"]) != 0  # needs --yes
    assert main(["--config", str(config), "keys", "erase-templates", "--yes"]) == 0

    doctor = check_template_protection(cfg)
    assert (doctor.status, doctor.detail) == ("PASS", "cancelable (0 templates stored under it)")
    assert _report(Path(cfg.storage.database_path), "cancelable")["problem"] is None
    asyncio.run(start())


def test_cli_gates_rotation_in_cancelable_mode_keeps_the_gate_working(
    minimal_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``gateway keys rotate --what transform`` on a cancelable gate with templates: the
    transform key is carried over, the daemon starts and still holds the same templates."""
    from gateway.cli.main import main

    gates = tmp_path / "keys" / "gates-key"
    text = minimal_config.read_text()
    minimal_config.write_text(
        text.replace(
            "[privacy]\n",
            f'[privacy]\ntemplate_protection = "cancelable"\ngates_key = {{ file = "{gates}" }}\n',
        )
    )
    cfg = load_config(minimal_config, env=False)
    keys = Keys.from_config(cfg, gates_optional=True)  # the site key stands in until rotated
    db = store.connect(Path(cfg.storage.database_path))
    audit.bind_key(db, audit.ChainKey(keys.subkey(Purpose.AUDIT_CHAIN)))
    try:
        _enrol(db, keys, "cancelable", "A")
        (pid,) = [r[0] for r in db.execute("SELECT person_id FROM face_keys")]
        before = Vault.from_keys(keys, protection="cancelable").load_person(db, pid)
    finally:
        audit.bind_key(db, None)
        db.close()

    argv = ["--config", str(minimal_config), "keys", "rotate", "--what", "transform"]
    assert main(argv) == 0
    assert "carried over" in capsys.readouterr().out
    assert gates.exists()

    async def start() -> np.ndarray:
        async with built_gateway(minimal_config) as gw:
            assert gw.keys.gates == SecretRef(file=gates).read_bytes()
            assert gw.keys.subkey(Purpose.BUNDLE_WRAP) != keys.subkey(Purpose.BUNDLE_WRAP)
            return np.asarray(gw.vault.load_person(gw.db, pid))

    np.testing.assert_array_equal(asyncio.run(start()), before)
