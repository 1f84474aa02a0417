"""Issue 18 item 10c, CLI: the office tools write the keyed chain with the device key, refuse
to write without it (before changing anything) and verify MACs only with it."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.privacy import audit, people
from gateway.store import database as store

from .conftest import write_key


def test_cli_on_a_keyed_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db_path = tmp_path / "state" / "state.db"
    raw = secrets.token_bytes(32)
    key_file = write_key(tmp_path / "keys" / "device-key", raw)
    db = store.connect(db_path)
    audit.bind_key(db, audit.ChainKey.from_device(raw))
    people.add_person(db, "Resident")  # the daemon keyed the chain
    audit.bind_key(db, None)
    db.conn.close()
    dbarg = ["--db", str(db_path)]

    assert main(["people", "add", "Visitor", *dbarg]) == 1
    assert "device key" in capsys.readouterr().err
    db = store.connect(db_path)
    assert db.execute("SELECT count(*) FROM people").fetchone()[0] == 1  # nothing half done
    db.conn.close()

    assert main(["people", "add", "Visitor", *dbarg, "--device-key", str(key_file)]) == 0
    capsys.readouterr()
    assert main(["people", "list", *dbarg]) == 0  # reading needs no key
    capsys.readouterr()
    assert main(["audit", "verify", *dbarg]) == 1  # MACs not checkable without the key
    assert "not MAC-checked" in capsys.readouterr().out
    assert main(["audit", "verify", *dbarg, "--device-key", str(key_file)]) == 0
    assert "audit chain ok" in capsys.readouterr().out
    other = write_key(tmp_path / "keys" / "other", secrets.token_bytes(32))
    assert main(["audit", "verify", *dbarg, "--device-key", str(other)]) == 1
    assert "BROKEN" in capsys.readouterr().out
