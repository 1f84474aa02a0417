"""The operator commands take the state database and keys from ``--config``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.config import load_config


def _gateway(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_people_commands_use_the_configured_database(minimal_config: Path) -> None:
    added = _gateway(minimal_config, "people", "add", "Li Wei", "--unit", "3-402")
    assert added.returncode == 0, added.stderr
    db = load_config(minimal_config, env=False).storage.database_path
    assert db.exists(), "the person must land in the configured state database"
    listed = _gateway(minimal_config, "people", "list")
    assert listed.returncode == 0, listed.stderr
    assert "Li Wei" in listed.stdout
    audit = _gateway(minimal_config, "audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr
