"""The daemon process: refuses bad config, SIGTERM exits cleanly, SIGHUP keeps a good config."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.config.root import load_config
from gateway.keys import StateLockedError, state_lock


def _start(config: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "daemon.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config), "run"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    return proc, log


def _wait_for(log: Path, text: str, timeout: float = 20.0, count: int = 1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not logged; log:\n{log.read_text(errors='replace')}")


def test_sigterm_exits_zero_within_5s_with_consistent_db(
    minimal_config: Path, tmp_path: Path
) -> None:
    state_dir = load_config(minimal_config, env=False).storage.state_dir
    proc, log = _start(minimal_config, tmp_path)
    try:
        _wait_for(log, "running for site test-site gate gate-1")
        with pytest.raises(StateLockedError), state_lock(state_dir):  # no key rotation now
            pass
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, log.read_text()
    assert elapsed < 5.0
    # Its start-up heap is out of the collector's full passes before it says it runs (a
    # long pass would stall its OSDP control panel past a reader's response timeout).
    frozen = re.search(r"daemon: (\d+) start-up objects kept out", log.read_text())
    assert frozen is not None, log.read_text()
    assert int(frozen.group(1)) > 10_000
    with state_lock(state_dir) as held:  # released at exit
        assert held
    db = load_config(minimal_config, env=False).storage.database_path
    assert oct(db.stat().st_mode & 0o777) == "0o600"
    assert oct(db.parent.stat().st_mode & 0o777) == "0o700"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1


def test_sighup_with_broken_file_keeps_old_config(minimal_config: Path, tmp_path: Path) -> None:
    proc, log = _start(minimal_config, tmp_path)
    good = minimal_config.read_text()
    try:
        _wait_for(log, "running for site")
        minimal_config.write_text(good + "\n[bogus]\nkey = 1\n")
        proc.send_signal(signal.SIGHUP)
        _wait_for(log, "reload of")
        _wait_for(log, "bogus: unknown key")
        assert proc.poll() is None, "a broken reload must not stop the daemon"
        # The same file again: nothing to do.
        minimal_config.write_text(good)
        proc.send_signal(signal.SIGHUP)
        _wait_for(log, "unchanged; nothing to reload")
        # A valid change is applied: safe shutdown, then the same process starts again.
        minimal_config.write_text(good.replace('gate = "gate-1"', 'gate = "gate-2"'))
        proc.send_signal(signal.SIGHUP)
        _wait_for(log, "configuration reloaded")
        _wait_for(log, "running for site test-site gate gate-2")
        assert proc.poll() is None, "the daemon restarts in place (same PID for systemd)"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "keeping the running configuration" in log.read_text()


def test_daemon_refuses_invalid_config_with_validate_output(
    minimal_config: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(minimal_config.read_text().replace('"card", "pin", "card+pin"', '"face"'))
    run = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(bad), "run"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    validate = subprocess.run(
        [sys.executable, "-m", "gateway", "config", "validate", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert run.returncode == 2
    assert validate.returncode == 2
    problems = validate.stderr.strip()
    assert "Art. 10" in problems
    assert problems in run.stderr
