"""The database the code before the Purpose table wrote (``data/make_legacy.py``): four people
with three random unit templates each, a card each (facility 12, numbers 1000-1003), a PIN
for p0 (482913), a keyed audit chain; and a gateway config around it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import sqlite_utils

from gateway.keys import Keys, Purpose
from gateway.privacy import audit
from gateway.store import database as store
from tests.conftest import write_secret

DATA = Path(__file__).parent / "data"


def legacy(tmp_path: Path) -> tuple[Path, Keys, np.ndarray]:
    """A copy of the legacy database, its keys and the raw templates (people x 3 x 128)."""
    db = tmp_path / "legacy.db"
    shutil.copy(DATA / "legacy.sqlite", db)
    keys = Keys(
        device=(DATA / "legacy-device-key").read_bytes().strip(),
        site=(DATA / "legacy-site-key").read_bytes().strip(),
    )
    return db, keys, np.load(DATA / "legacy-raw.npy")


def open_keyed(path: Path, keys: Keys) -> sqlite_utils.Database:
    """The database with ``keys``' audit chain key bound (unbind when done)."""
    db = store.connect(path)
    audit.bind_key(db, audit.ChainKey(keys.subkey(Purpose.AUDIT_CHAIN)))
    return db


def legacy_config(tmp_path: Path, minimal_config: Path, extra: str = "") -> np.ndarray:
    """Make ``minimal_config`` a gate holding the legacy database and keys (key files in
    tmp_path/legacy-keys; ``extra`` lines go into [privacy]); return the raw templates."""
    path, keys, raw = legacy(tmp_path)
    keydir = tmp_path / "legacy-keys"
    text = minimal_config.read_text()
    site = write_secret(keydir / "site", keys.site)
    device = write_secret(keydir / "device", keys.device)
    text = text.replace(str(tmp_path / "keys" / "site-key"), str(site))  # minimal_config's
    text = text.replace(str(tmp_path / "keys" / "device-key"), str(device))
    text = text.replace("[privacy]\n", f"[privacy]\n{extra}")
    minimal_config.write_text(text)
    state = tmp_path / "state"
    state.mkdir(parents=True, exist_ok=True)
    from gateway.config.root import load_config

    target = Path(load_config(minimal_config, env=False).storage.database_path)
    target.write_bytes(path.read_bytes())
    return raw
