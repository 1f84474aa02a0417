"""The privacy CLI end to end on a temporary database."""

from __future__ import annotations

import argparse
import io
import json
import secrets
from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.cli import privacy as commands
from gateway.store import database as store

from .conftest import NOTICE_EN, write_key
from .test_enroll import FakePipeline, _img


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gateway")
    parser.add_argument("--config", type=Path, default=None)
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    notice = tmp_path / "notice.txt"
    notice.write_text(NOTICE_EN, encoding="utf-8")
    return {
        "db": str(tmp_path / "state" / "state.db"),
        "dk": str(write_key(tmp_path / "keys" / "device-key", secrets.token_hex(32).encode())),
        "sk": str(write_key(tmp_path / "keys" / "site-key", secrets.token_bytes(32))),
        "notice": str(notice),
    }


def test_cli_flow(
    env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = ["--db", env["db"]]
    keys = ["--device-key", env["dk"], "--site-key", env["sk"]]
    notice = ["--notice-file", env["notice"], "--notice-version", "1"]
    assert _run(["people", "add", "Zhang San", "--unit", "5-201", *db]) == 0
    pid = capsys.readouterr().out.strip()
    assert _run(["people", "add", "Kid", "--minor", *db]) == 1
    assert "guardian" in capsys.readouterr().err

    monkeypatch.setattr(commands, "_load_pipeline", lambda _d, _c: FakePipeline())
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    _img(imgs / "a.png", 10)
    _img(imgs / "b.png", 0)
    assert _run(["enroll", pid, "--images", str(imgs), *db, *keys]) == 1
    assert "consent" in capsys.readouterr().err

    assert _run(["consent", "grant", pid, "--method", "paper", *db, *notice]) == 0
    capsys.readouterr()
    # Face must never be the only way in (Art. 10): a card or PIN first.
    assert _run(["enroll", pid, "--images", str(imgs), *db, *keys]) == 1
    assert "no card or PIN" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("24680\n"))
    assert _run(["people", "set-pin", pid, *db, *keys]) == 0
    assert "24680" not in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("12a\n"))
    assert _run(["people", "set-pin", pid, *db, *keys]) == 1
    assert "digits" in capsys.readouterr().err
    assert (
        _run(["people", "add-card", pid, "--number", "88123", "--facility", "7", *db, *keys]) == 0
    )
    assert (
        _run(["people", "add-card", pid, "--number", "88123", "--facility", "7", *db, *keys]) == 1
    )
    assert "already enrolled" in capsys.readouterr().err
    assert _run(["people", "add-card", "nobody", "--number", "1", *db, *keys]) == 1
    assert "no person" in capsys.readouterr().err
    dump = Path(env["db"]).read_bytes()
    assert b"88123" not in dump
    assert b"24680" not in dump
    assert _run(["enroll", pid, "--images", str(imgs), *db, *keys]) == 0
    cap = capsys.readouterr()
    assert "a.png  ok" in cap.out
    assert "b.png  no_face" in cap.out
    assert "2/2" in cap.err  # progress bar on stderr

    assert _run(["people", "show", pid, *db]) == 0
    assert "templates:     1" in capsys.readouterr().out
    assert _run(["consent", "withdraw", pid, *db, *keys]) == 0
    assert "1 templates erased" in capsys.readouterr().out
    assert _run(["consent", "show", pid, *db]) == 0
    assert "withdrawn" in capsys.readouterr().out

    # the chain is keyed by the device key: verifying it (MACs) needs that key
    assert _run(["audit", "verify", *db]) == 1
    assert _run(["audit", "verify", *db, "--device-key", env["dk"]]) == 0
    out = tmp_path / "records.csv"
    export = ["compliance", "export", "--format", "csv", "--out", str(out), *db]
    assert _run(export) == 1  # the export is audited: a keyed chain needs the device key
    assert _run([*export, "--device-key", env["dk"]]) == 0
    assert "consent" in out.read_text()
    assert _run(["compliance", "report", "--gate", "g1", "--gate-counts", '{"g2": 5}', *db]) == 0
    text = capsys.readouterr().out
    assert "enrolled across compound: 5 (level: ok)" in text
    assert _run(["purge", *db, *keys]) == 0
    assert _run(["purge", "--processing-records-years", "2", *db, *keys]) == 1
    assert "3 years" in capsys.readouterr().err

    conn = store.connect(Path(env["db"]))
    conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
    conn.conn.close()
    assert _run(["audit", "verify", *db]) == 1
    assert "BROKEN at seq 2" in capsys.readouterr().out


def test_cli_compliance_report_json(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(
        [
            "compliance",
            "report",
            "--json",
            "--gate",
            "g1",
            "--gate-counts",
            '{"g2": 100000}',
            "--db",
            env["db"],
        ]
    )
    assert code == 2  # filing required
    rep = json.loads(capsys.readouterr().out)
    assert rep["compound"]["level"] == "filing_required"
    assert "filing_deadline" in rep["compound"]


def test_cli_zones_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "frame.png"
    cv2.imwrite(str(src), np.full((120, 160, 3), 200, dtype=np.uint8))
    out = tmp_path / "zones.png"
    zones = '[{"name": "window", "polygon": [[0.5, 0], [1, 0], [1, 0.5], [0.5, 0.5]]}]'
    assert (
        _run(["zones", "preview", "gate", "--image", str(src), "--zones", zones, "--out", str(out)])
        == 0
    )
    img = cv2.imread(str(out))
    assert img is not None
    assert (img[10:50, 90:150] == 0).all()
    assert _run(["zones", "preview", "gate", "--out", str(out)]) == 1
    assert "--source" in capsys.readouterr().err


def test_purge_and_report_use_the_configured_retention(
    minimal_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = minimal_config.read_text() + "\n[retention]\ninactive_template_days = 365\n"
    minimal_config.write_text(text)
    cfg = ["--config", str(minimal_config)]
    assert _run([*cfg, "compliance", "report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["retention"]["inactive_template_days"] == 365
    flag = ["--access-log-days", "7", "--json"]
    assert _run([*cfg, "compliance", "report", *flag]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["retention"]["access_log_days"] == 7
    assert report["retention"]["inactive_template_days"] == 365


def test_zones_preview_always_applies_the_configured_zones(tmp_path: Path) -> None:
    """`--zones` can add zones to try, never drop the camera's configured ones."""
    from tests.conftest import REPO

    cfg_text = (REPO / "config" / "gateway.example.toml").read_text()
    assert "[cameras.north-cam]" in cfg_text
    src = tmp_path / "frame.png"
    cv2.imwrite(str(src), np.full((480, 640, 3), 200, dtype=np.uint8))
    out = tmp_path / "zones.png"
    config = ["--config", str(REPO / "config" / "gateway.example.toml")]
    argv = [*config, "zones", "preview", "north-cam", "--image", str(src), "--out", str(out)]
    assert _run([*argv, "--zones", "[]"]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    img = cv2.imread(str(out))
    assert img is not None
    assert (img == 0).all(axis=2).sum() > 1000, "the configured no-capture zone was not blanked"
