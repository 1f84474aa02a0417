"""Issue #18 item 3: ``gateway people revoke-card | revoke-pin | set-validity`` -- the same
audited service the signed MQTT commands use; bad input gets a clear error."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.main import main
from gateway.hardware.events import CardRead


def _run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str, stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def gate(minimal_config: Path) -> dict[str, Any]:
    from gateway.config.root import load_config
    from gateway.credentials.store import Credentials
    from gateway.keys import Keys
    from gateway.privacy.people import add_person
    from gateway.store import database as store

    cfg = load_config(minimal_config, env=False)
    db = store.connect(cfg.storage.database_path)
    keys = Keys.from_config(cfg)
    creds = Credentials(db, keys.device, index_key=keys.pin_index_site)
    pid = add_person(db, "Li Wei", unit="3-402")
    creds.add_card(pid, 10, 1111, 0.0)
    creds.add_card(pid, 10, 2222, 0.0)
    creds.set_pin(pid, "246810", 0.0)
    return {"config": str(minimal_config), "pid": pid, "db": db, "creds": creds}


def _audit(db: Any, action: str) -> list[dict[str, Any]]:
    rows = db.execute("SELECT details FROM audit WHERE action = ? ORDER BY seq", [action])
    return [json.loads(r[0]) for r in rows.fetchall()]


def _card(creds: Any, number: int) -> str | None:
    result: str | None = creds.identify_card(CardRead("r", number, 10, "H10301", 26))
    return result


def test_revoke_card_by_number_then_all(
    gate: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, pid, db, creds = gate["config"], gate["pid"], gate["db"], gate["creds"]
    base = ("--config", cfg, "people", "revoke-card", pid, "--facility", "10")
    code, out, err = _run(monkeypatch, capsys, *base, stdin="1111\n")
    assert (code, err) == (0, "")
    assert "1 card(s)" in out
    assert "1111" not in out  # the number is never echoed
    assert _card(creds, 1111) is None
    assert _card(creds, 2222) == pid
    code, _, err = _run(monkeypatch, capsys, *base, stdin="12ab\n")
    assert code == 1
    assert "card number" in err
    code, _, err = _run(monkeypatch, capsys, *base, stdin="1111\n")  # already revoked
    assert code == 1
    assert "no active card" in err
    code, out, _ = _run(monkeypatch, capsys, *base, "--all")
    assert code == 0
    assert "1 card(s)" in out
    assert _card(creds, 2222) is None
    assert [d["channel"] for d in _audit(db, "card.revoked")] == ["cli", "cli", "cli"]
    assert [d["count"] for d in _audit(db, "card.revoked")] == [1, 0, 1]
    code, _, err = _run(
        monkeypatch, capsys, "--config", cfg, "people", "revoke-card", "nobody", "--all"
    )
    assert code == 1
    assert "no person 'nobody'" in err


def test_revoke_pin(
    gate: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, pid, db, creds = gate["config"], gate["pid"], gate["db"], gate["creds"]
    assert creds.identify_pin("246810", reader="r", now=1.0) is not None
    code, out, _ = _run(monkeypatch, capsys, "--config", cfg, "people", "revoke-pin", pid)
    assert code == 0
    assert "1 PIN(s)" in out
    assert creds.identify_pin("246810", reader="r", now=2.0) is None
    assert _audit(db, "pin.revoked") == [{"channel": "cli", "count": 1, "kind": "all"}]


def test_set_validity(
    gate: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.privacy.people import get_person

    cfg, pid, db = gate["config"], gate["pid"], gate["db"]
    base = ("--config", cfg, "people", "set-validity", pid)
    code, out, _ = _run(monkeypatch, capsys, *base, "--until", "2020-01-01T00:00+00:00")
    assert code == 0
    assert "until 2020-01-01 00:00" in out
    assert get_person(db, pid).valid_until == 1577836800.0
    assert get_person(db, pid).valid_from is None
    code, _, err = _run(monkeypatch, capsys, *base, "--from", "2030-01-01")
    assert code == 1
    assert "valid_until must be after valid_from" in err
    code, _, err = _run(monkeypatch, capsys, *base, "--until", "someday")
    assert code == 1
    assert "not an ISO date" in err
    code, _, err = _run(monkeypatch, capsys, *base)
    assert code == 1
    assert "--from and/or --until" in err
    code, _, _ = _run(monkeypatch, capsys, *base, "--until", "none")
    assert code == 0
    assert get_person(db, pid).valid_until is None
    assert [d["valid_until"] for d in _audit(db, "person.validity")] == [1577836800.0, None]
