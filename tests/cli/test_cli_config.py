"""The operator commands take the state database and keys from ``--config``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.root import load_config


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


def test_global_options_are_also_accepted_after_the_subcommand(
    minimal_config: Path, tmp_path: Path
) -> None:
    """``gateway doctor --config FILE`` works like ``gateway --config FILE doctor`` (#14)."""
    from gateway.cli.main import build_parser

    parser = build_parser()
    before = parser.parse_args(["--config", str(minimal_config), "people", "add", "Li Wei"])
    after = parser.parse_args(["people", "add", "Li Wei", "--config", str(minimal_config)])
    nested = parser.parse_args(["config", "validate", "--config", str(minimal_config)])
    default = parser.parse_args(["people", "add", "Li Wei"])
    assert before.config == after.config == nested.config == minimal_config
    assert default.config != minimal_config  # not given: the default, not None
    # the later one wins, as with any repeated option
    other = tmp_path / "other.toml"
    both = parser.parse_args(["--config", str(other), "doctor", "--config", str(minimal_config)])
    assert both.config == minimal_config
    # end to end: a person added with --config after the subcommand lands in that database
    args = ["people", "add", "Li Wei", "--config", str(minimal_config)]
    added = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    assert load_config(minimal_config, env=False).storage.database_path.exists()


def test_demo_broker_without_amqtt_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """amqtt is an extra (the demo's embedded broker), not a dependency of a gate (#14)."""
    import asyncio
    import builtins

    from gateway.demo.broker import EmbeddedBroker
    from gateway.errors import GatewayError

    real_import = builtins.__import__

    def no_amqtt(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("amqtt"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_amqtt)
    with pytest.raises(GatewayError, match=r"access-gateway\[demo\]"):
        asyncio.run(EmbeddedBroker().start())
