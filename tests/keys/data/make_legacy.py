"""Write legacy.sqlite and its keys with the code from BEFORE the Purpose table (#20 item 2).

Run once against that code, e.g. ``git archive <old commit> gateway | tar -x -C OLD`` and
``PYTHONPATH=OLD python make_legacy.py DIR``: four people with three random unit templates
each, a card each, a PIN for p0, and a keyed audit chain.
"""

from __future__ import annotations

import importlib
import secrets
import sys
from pathlib import Path

import numpy as np


def main(out: Path) -> None:
    """Write the legacy database, its device and site keys and the raw templates to ``out``."""
    from gateway.credentials.store import Credentials
    from gateway.keys import Keys
    from gateway.privacy import access_log, audit
    from gateway.privacy.vault import Vault
    from gateway.store import database as store

    assert not hasattr(importlib.import_module("gateway.keys"), "Purpose"), "needs the old code"
    device, site = secrets.token_hex(32).encode(), secrets.token_hex(32).encode()
    (out / "legacy-device-key").write_bytes(device + b"\n")
    (out / "legacy-site-key").write_bytes(site + b"\n")
    db = store.connect(out / "legacy.sqlite")
    audit.bind_key(db, audit.ChainKey.from_device(device))
    access_log.bind_key(db, access_log.key_from_device(device))
    vault = Vault.from_root_keys(device, site)
    creds = Credentials(db, device, index_key=Keys(device, site).pin_index_site)
    rng = np.random.default_rng(20)
    raw = rng.standard_normal((4, 3, 128)).astype(np.float32)
    raw /= np.linalg.norm(raw, axis=2, keepdims=True)
    now = 1_780_000_000.0
    for i in range(4):
        pid = f"p{i}"
        db.execute(
            "INSERT INTO people (id, display_name, role, created_at) VALUES (?, ?, 'resident', ?)",
            [pid, f"Person {i}", now],
        )
        vault.store_templates(db, pid, raw[i], model="test-model")
        audit.append(db, "test", "template.create", pid, {"count": 3})
        creds.add_card(pid, 12, 1000 + i, now)
    creds.set_pin("p0", "482913", now)
    np.save(out / "legacy-raw.npy", raw)
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.conn.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
