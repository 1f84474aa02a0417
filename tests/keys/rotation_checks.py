"""Checks shared by the purpose-rotation tests: open a rotated gate's database with its keys
(as the daemon does), and the faces, card, PIN and audit chain of the legacy gate
(:mod:`tests.keys.legacy`) still working under them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import sqlite_utils

from gateway.config.root import GatewayConfig
from gateway.credentials.store import Credentials
from gateway.keys import Keys, Purpose
from gateway.privacy import access_log, audit, compliance
from gateway.privacy.vault import Vault
from gateway.services.keys import load_keys
from gateway.store import database as store
from tests.keys.legacy import open_keyed
from tests.support.swtpm import SoftTpm


class Card:
    """The legacy gate's card of p3."""

    facility = 12
    card_number = 1003


def rotate(config: Path, what: str) -> None:
    """``gateway keys rotate --what WHAT --actor ops``, which must succeed."""
    from gateway.cli.main import main

    argv = ["--config", str(config), "keys", "rotate", "--what", what, "--actor", "ops"]
    assert main(argv) == 0


def db_and_wal(path: Path) -> bytes:
    """A database file's bytes and its WAL's (when there is one)."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def on_disk(cfg: GatewayConfig, *key_dirs: Path) -> bytes:
    """The database, its WAL and every file of the credentials (key) directories."""
    out = db_and_wal(Path(cfg.storage.database_path))
    files = [p for d in key_dirs for p in sorted(d.rglob("*")) if p.is_file()]
    return out + b"".join(p.read_bytes() for p in files)


def open_gate(cfg: GatewayConfig) -> tuple[sqlite_utils.Database, Keys]:
    """The database with the gate's keys loaded and its audit and access-log keys bound."""
    with store.connect(Path(cfg.storage.database_path)) as plain:
        keys = load_keys(cfg, plain.conn)
    db = open_keyed(Path(cfg.storage.database_path), keys)
    access_log.bind_key(db, keys.subkey(Purpose.ACCESS_LOG))
    return db, keys


def close_gate(db: sqlite_utils.Database) -> None:
    """Unbind the keys and close."""
    audit.bind_key(db, None)
    access_log.bind_key(db, None)
    db.close()


def check_credentials(db: sqlite_utils.Database, keys: Keys) -> None:
    """p3's card and p0's PIN identify them; the audit chain verifies under the bound key."""
    creds = Credentials(db, keys.device, index_key=keys.pin_index_site, carried=keys.carried)
    assert creds.identify_card(Card()) == "p3"
    match = creds.identify_pin("482913", reader="entry", now=1_780_000_100.0)
    assert match is not None
    assert match.person_id == "p0"
    assert audit.verify(db).ok


def still_works(cfg: GatewayConfig, raw: np.ndarray, what: str, by: str = "ops") -> Keys:
    """Faces (same scores), the card, the PIN and the audit chain under the rotated keys;
    the compliance report lists the rotation ``what`` by ``by``. Returns the keys."""
    db, keys = open_gate(cfg)
    try:
        vault = Vault.from_keys(keys)
        for i in range(len(raw)):
            scores = vault.load_person(db, f"p{i}") @ vault.transform(raw[i]).T
            np.testing.assert_allclose(np.diag(scores), 1.0, atol=1e-5)
        check_credentials(db, keys)
        assert compliance.key_rotations(db)[what]["by"] == by
        report = compliance.compliance_report(db, gate="g1", today=dt.date(2026, 12, 6))
        text = compliance.format_report(report).splitlines()
        assert f"{what} " in next(ln for ln in text if "key rotations" in ln)
    finally:
        close_gate(db)
    return keys


def seal_to(
    swtpm: SoftTpm, tmp_path: Path, config: Path, device_file: Path, pcrs: str = ""
) -> Path:
    """Seal the device key file to ``swtpm`` (``gateway keys seal --remove-clear``; bound to
    ``pcrs``, e.g. ``"[7]"``, when given) and switch the config to the TPM provider; return
    the blobs' directory."""
    from gateway.cli.main import main

    text = "\n".join(
        ln for ln in config.read_text().splitlines() if not ln.startswith("device_key")
    )
    blobs = tmp_path / "cred"
    config.write_text(
        f'{text}\n[keys]\nprovider = "tpm"\ntcti = "{swtpm.tcti}"\n'
        f'public_blob = "{blobs / "dk.pub"}"\nprivate_blob = "{blobs / "dk.priv"}"\n'
        + (f"pcrs = {pcrs}\n" if pcrs else "")
    )
    argv = ["--config", str(config), "keys", "seal", "--from", str(device_file)]
    assert main([*argv, "--remove-clear"]) == 0
    return blobs
