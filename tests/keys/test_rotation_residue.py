"""The check every ``gateway keys rotate`` ends with (:mod:`gateway.services.key_rotation`):
it finds what the rotation retired when a copy is left on disk (raw or hex), says what it
looked for when nothing is, and never counts a key still in use under another name."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.root import load_config
from gateway.services.key_rotation import Snapshot, retired, rotate_stopped, snapshot_stopped
from tests.keys.legacy import legacy_config


def test_a_copy_of_the_old_device_key_left_beside_it_fails_the_rotation(
    tmp_path: Path, minimal_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli.main import main

    legacy_config(tmp_path, minimal_config)
    old = (tmp_path / "legacy-keys" / "device").read_bytes()
    (tmp_path / "legacy-keys" / "device.bak").write_bytes(old.hex().encode())  # an operator's

    argv = ["--config", str(minimal_config), "keys", "rotate", "--what", "device"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "OLD KEY MATERIAL STILL ON DISK (device key in device.bak" in err

    (tmp_path / "legacy-keys" / "device.bak").unlink()
    assert main(argv) == 0  # the next rotation (the copy gone) is clean
    assert "old key material gone: none of" in capsys.readouterr().out


def test_every_rotation_together_leaves_nothing_of_before(
    tmp_path: Path, minimal_config: Path
) -> None:
    legacy_config(tmp_path, minimal_config)
    gates = tmp_path / "legacy-keys" / "gates"
    text = minimal_config.read_text()
    minimal_config.write_text(
        text.replace("[privacy]\n", f'[privacy]\ngates_key = {{ file = "{gates}" }}\n', 1)
    )
    cfg = load_config(minimal_config, env=False)
    first = snapshot_stopped(cfg)  # the gates key not written yet: the site key stands in
    for what in ("transform", "device", "audit", "access-log", "card", "pin", "pseudonym"):
        outcome = rotate_stopped(cfg, what, actor="ops")
        assert outcome.residue.clean, outcome.residue.found
        assert outcome.residue.keys_checked > 0
    gone = retired(first, snapshot_stopped(cfg))
    assert {"device key", "TEMPLATE_TRANSFORM key", "AUDIT_CHAIN key", "PSEUDONYM key"} <= set(
        gone.keys
    )
    assert {"card hashes", "audit MACs", "wrapped template keys"} <= set(gone.stored)
    assert "PIN_INDEX key" not in gone.keys  # site-rooted and shared: layered, not renewed


def test_a_key_in_use_under_another_name_is_not_retired() -> None:
    site = b"s" * 32
    before = Snapshot({"TEMPLATE_TRANSFORM key": site, "device key": b"d" * 32})
    after = Snapshot({"gates key": site, "device key": b"e" * 32})
    assert set(retired(before, after).keys) == {"device key"}
