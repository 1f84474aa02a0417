"""Packaging, CLI entry points and the systemd unit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def test_python_m_gateway_and_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "--help"], capture_output=True, text=True, check=True
    )
    for cmd in ("run", "config", "doctor"):
        assert cmd in out.stdout
    assert "unavailable" not in out.stderr, out.stderr


def test_bad_cli_arguments_give_usage_and_exit_2() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "frobnicate"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert "invalid choice: 'frobnicate'" in out.stderr


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (REPO / "systemd" / "access-gateway.service").read_text()
    for key in (
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "StateDirectory=access-gateway",
        "LoadCredential=device-key",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service",
        "DeviceAllow=char-video4linux",
        "DeviceAllow=char-gpiochip",
        "Restart=on-failure",
    ):
        assert key in unit, key
    # ExecStart must point at an existing executable for verify; use this interpreter's.
    exe = Path(sys.executable).with_name("gateway")
    if not exe.exists():
        exe = Path(shutil.which("true") or "/bin/true")
    local = tmp_path / "access-gateway.service"
    local.write_text(unit.replace("/opt/access-gateway/bin/gateway", str(exe)))
    out = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "Unknown" not in out.stderr, out.stderr


def test_doctor_reports_failures_with_reasons(minimal_config: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "--config",
            str(minimal_config),
            "doctor",
            "--timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    lines = {line.split()[1]: line for line in out.stdout.splitlines() if line.strip()}
    assert lines["config"].startswith("PASS")
    assert lines["storage"].startswith("PASS")
    assert lines["reader"].startswith("FAIL")
    assert "cannot connect" in lines["reader"]
    assert lines["broker"].startswith("SKIP")
