"""Issue #15 item 6: gate decommission (signed MQTT command and CLI) crypto-erases every key
and template, writes a report without identities, and the gate does not start again."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from gateway.cli import decommission as decommission_cli
from gateway.config.root import load_config
from gateway.credentials.store import Credentials
from gateway.errors import ConfigError
from gateway.keys import Keys
from gateway.mqtt import sign
from gateway.privacy import audit, people
from gateway.privacy.vault import Vault
from gateway.services.keys import load_keys
from gateway.store import database as store
from tests.conftest import built_gateway
from tests.support.site_gate import with_command_key

NAME, UNIT, CARD = "Zhao Minghui", "7-1203", 424242


def _seed(config: Path) -> str:
    """One person with a card, a PIN and face templates."""
    cfg = load_config(config, env=False)
    db = store.connect(cfg.storage.database_path)
    keys = Keys.from_config(cfg)
    audit.bind_key(db, audit.ChainKey.from_device(keys.device))
    creds = Credentials(db, keys.device, index_key=keys.pin_index_site)
    pid = people.add_person(db, NAME, unit=UNIT)
    creds.add_card(pid, 10, CARD, 1.0)
    creds.set_pin(pid, "583920", 1.0)
    emb = np.random.default_rng(1).standard_normal((3, 128)).astype(np.float32)
    Vault.from_keys(keys).store_templates(db, pid, emb, model="sface")
    db.close()
    return pid


def _secret_files(config: Path) -> list[Path]:
    cfg = load_config(config, env=False)
    refs = [cfg.privacy.device_key, cfg.privacy.site_key, cfg.readers["entry"].scbk]
    return [r.file for r in refs if r is not None and r.file is not None]


def _assert_erased(config: Path, pid: str, report: dict[str, Any]) -> None:
    cfg = load_config(config, env=False)
    assert report["rows"]["templates"] == 3
    assert (report["rows"]["face_keys"], report["rows"]["cards"], report["rows"]["pins"]) == (
        1,
        1,
        1,
    )
    assert report["rows"]["people"] == 1
    files = {f["setting"]: f["result"] for f in report["files"]}
    assert files["privacy.device_key"] == files["privacy.site_key"] == "erased"
    assert files["readers.entry.scbk"] == "erased"
    for path in _secret_files(config):
        assert not path.exists(), path
    text = json.dumps(report) + Path(report["report_file"]).read_text()
    for secret in (pid, NAME, UNIT, str(CARD)):
        assert secret not in text  # the report holds no identity
    assert Path(report["report_file"]).stat().st_mode & 0o077 == 0
    db_files = [cfg.storage.database_path, Path(f"{cfg.storage.database_path}-wal")]
    raw = b"".join(p.read_bytes() for p in db_files if p.exists())
    assert NAME.encode() not in raw  # overwritten, vacuumed and checkpointed
    assert UNIT.encode() not in raw
    db = store.connect(cfg.storage.database_path)
    try:
        actions = [r[0] for r in db.execute("SELECT action FROM audit ORDER BY seq").fetchall()]
        assert "gate.decommission" in actions
        with pytest.raises(ConfigError, match="decommissioned"):
            load_keys(cfg, db.conn)  # the daemon refuses to start on it
    finally:
        db.close()


def test_the_signed_command_decommissions_the_running_gate(minimal_config: Path) -> None:
    config, key = with_command_key(minimal_config)
    pid = _seed(config)

    async def scenario() -> dict[str, Any]:
        async with built_gateway(config) as gw:
            creds = gw.controller.credentials
            card = SimpleNamespace(facility=10, card_number=CARD)
            assert creds.identify_card(card) == pid

            async def send(confirm: str) -> Any:
                env = sign.sign_envelope(
                    "decommission", {"confirm": confirm}, key, site="test-site", gate="gate-1"
                )
                return await gw.commands.process("decommission", json.dumps(env).encode())

            wrong = await send("gate-2")
            assert (wrong.ok, wrong.error) == (False, "refused")
            assert "confirm with that gate id" in wrong.detail
            assert all(p.exists() for p in _secret_files(config))  # nothing erased
            res = await send("gate-1")
            assert res.ok, res
            assert creds.identify_card(card) is None  # no card opens any more
            again = await send("gate-1")  # its nonces are erased: nothing may run now
            assert (again.ok, again.error) == (False, "refused")
            assert "decommissioned" in again.detail
            assert not gw.daemon._stop.is_set()  # the result goes out first
            await asyncio.sleep(2.3)
            assert gw.daemon._stop.is_set()  # then the daemon stops
            return dict(res.result)

    report = asyncio.run(scenario())
    kid = sign.key_id_of(key.public_key())
    assert (report["by"], report["channel"]) == (f"mqtt:{kid}", "mqtt")  # who signed it
    _assert_erased(config, pid, report)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gateway")
    parser.add_argument("--config", type=Path, default=None)
    decommission_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_the_cli_decommissions_a_stopped_gate(
    minimal_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pid = _seed(minimal_config)
    base = ["--config", str(minimal_config), "decommission", "--actor", "installer-7"]
    assert _cli([*base, "--confirm", "gate-9"]) == 1
    assert "confirm with that gate id" in capsys.readouterr().err
    assert all(p.exists() for p in _secret_files(minimal_config))
    out = tmp_path / "reports" / "decommission.json"
    assert _cli([*base, "--confirm", "gate-1", "--report", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["by"], report["channel"], report["gate"]) == ("installer-7", "cli", "gate-1")
    assert report["vacuumed"] is True
    assert report["wal_truncated"] is True
    _assert_erased(minimal_config, pid, report)
    capsys.readouterr()
    assert _cli([*base, "--confirm", "gate-1"]) == 1  # once is enough
    assert "already decommissioned" in capsys.readouterr().err


def test_tpm_blobs_are_erased_and_a_systemd_credential_is_reported(
    minimal_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sealed device key's blobs are shredded (no TPM needed: nothing is unsealed); a
    secret held as a systemd credential cannot be erased from here and is named."""
    from gateway.services import decommission as svc

    blobs = tmp_path / "tpm"
    pub, priv = blobs / "device-key.tpm.pub", blobs / "device-key.tpm.priv"
    for blob in (pub, priv):
        blob.parent.mkdir(exist_ok=True)
        blob.write_bytes(b"\x01" * 80)
    creds_dir = tmp_path / "credentials"
    creds_dir.mkdir()
    (creds_dir / "scbk").write_text("00" * 16)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds_dir))
    text = minimal_config.read_text()
    device_line = next(ln for ln in text.splitlines() if ln.startswith("device_key"))
    scbk_line = next(ln for ln in text.splitlines() if ln.startswith("scbk"))
    text = text.replace(device_line + "\n", "").replace(scbk_line, 'scbk = { credential = "scbk" }')
    text += f'\n[keys]\nprovider = "tpm"\npublic_blob = "{pub}"\nprivate_blob = "{priv}"\n'
    minimal_config.write_text(text)
    cfg = load_config(minimal_config, env=False)
    db = store.connect(cfg.storage.database_path)
    try:
        rep = svc.decommission(cfg, db, actor="t", channel="cli", report_path=tmp_path / "r.json")
    finally:
        db.close()
    files = {f["setting"]: f["result"] for f in rep.files}
    assert files["keys.public_blob"] == files["keys.private_blob"] == "erased"
    assert files["keys.private_blob (.new)"] == "absent"
    assert not pub.exists()
    assert not priv.exists()
    assert any(
        "readers.entry.scbk" in line and "systemd credential" in line for line in rep.not_erased
    )
    assert (creds_dir / "scbk").exists()  # not ours to erase


def test_the_consoles_self_signed_key_is_erased(minimal_config: Path, tmp_path: Path) -> None:
    """Regression: the web console's self-signed TLS key (made in the state directory when no
    key is configured) outlived the decommission: whoever got the board could pose as it."""
    from gateway.services import decommission as svc
    from gateway.web.tls import self_signed

    cfg = load_config(minimal_config, env=False)
    _, key = self_signed(cfg.storage.state_dir, ["127.0.0.1"], "gate-1")
    assert key.exists()
    db = store.connect(cfg.storage.database_path)
    try:
        rep = svc.decommission(cfg, db, actor="t", channel="cli", report_path=tmp_path / "r.json")
    finally:
        db.close()
    assert {f["setting"]: f["result"] for f in rep.files}["web (self-signed key)"] == "erased"
    assert not key.exists()


def test_a_gate_whose_device_key_is_lost_can_still_be_decommissioned(
    minimal_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: without the device key (a failed TPM, a deleted key file) the CLI refused
    before erasing anything (the keyed audit chain cannot be written), so the names, units
    and consents of a broken gate stayed. They are erased; the report says that no audit row
    was written."""
    _seed(minimal_config)
    cfg = load_config(minimal_config, env=False)
    db = store.connect(cfg.storage.database_path)
    audit.bind_key(db, None)  # this process seeded it: forget the key it bound
    db.close()
    assert cfg.privacy.device_key is not None
    assert cfg.privacy.device_key.file is not None
    cfg.privacy.device_key.file.unlink()
    out = tmp_path / "report.json"
    argv = ["--config", str(minimal_config), "decommission", "--confirm", "gate-1"]
    assert _cli([*argv, "--report", str(out)]) == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["rows"]["people"] == 1
    assert any("device key is lost" in line for line in report["not_erased"])
    db_files = [cfg.storage.database_path, Path(f"{cfg.storage.database_path}-wal")]
    raw = b"".join(p.read_bytes() for p in db_files if p.exists())
    for secret in (NAME, UNIT):  # person ids stay only as audit subjects (the chain stays)
        assert secret.encode() not in raw
