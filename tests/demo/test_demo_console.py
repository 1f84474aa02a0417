"""The demo's web console: a ``[web]`` table the daemon accepts, an admin account whose
password logs in, and ``--keep-open`` keeping everything up after the summary."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.config.root import load_config
from gateway.demo import console as web_console
from gateway.demo import run as demo
from gateway.store import database as store
from gateway.web import accounts
from hw_sim.runner import ScenarioResult
from tests.web.console import login


def test_the_console_section_is_valid_and_the_admin_password_logs_in(
    minimal_config: Path, tmp_path: Path
) -> None:
    console = web_console.plan()
    assert console is not None
    assert console.url == f"https://127.0.0.1:{console.port}/"
    minimal_config.write_text(minimal_config.read_text() + console.config_section())
    cfg = load_config(minimal_config)
    assert (cfg.web.enabled, cfg.web.port, cfg.web.listen) == (True, console.port, ["127.0.0.1"])
    db = store.connect(tmp_path / "state.db")
    web_console.add_admin(db, console)
    _, session = login(db, "admin", console.password, policy=accounts.LoginPolicy())
    assert session.role == "admin"
    db.conn.close()
    assert web_console.plan() != console  # a new password (and port) every run


def test_keep_open_waits_after_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "alpha.yaml").write_text("name: alpha\n")
    seen: list[str] = []

    async def set_up(stack: Any) -> dict[str, str]:
        return {}

    async def play(stack: Any, files: Any, *a: Any) -> list[ScenarioResult]:
        return [ScenarioResult("alpha", str(files[0]), "pass")]

    async def stop_daemon(self: Any) -> None:
        seen.append("stopped")

    async def keep_open() -> None:
        seen.append("summary printed" if "alpha" in capsys.readouterr().out else "no summary")

    monkeypatch.setattr(demo, "_set_up", set_up)
    monkeypatch.setattr(demo, "_play", play)
    monkeypatch.setattr(demo.DemoStack, "stop_daemon", stop_daemon)
    monkeypatch.setattr(web_console, "keep_open", keep_open)
    args = argparse.Namespace(
        scenarios=[folder], mqtt="mqtt://127.0.0.1:9", keep=False, keep_open=True
    )
    assert asyncio.run(demo.run_demo(args)) == 0
    assert seen == ["summary printed", "stopped"]
    assert "alpha" not in capsys.readouterr().out  # printed once
