"""Bad configuration input gives a clear error naming the file/line or the variable, never a
traceback: from ``load_config``, ``gateway config validate`` and a SIGHUP reload (#18 item 9)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.config.root import format_problems, load_config
from gateway.daemon.process import Daemon
from gateway.errors import ConfigError
from tests.conftest import REPO

EXAMPLE = REPO / "config" / "gateway.example.toml"


def _problems(path: Path, **env: str) -> list[tuple[str, str, str]]:
    with pytest.MonkeyPatch.context() as mp:
        for k in [k for k in os.environ if k.startswith("GATEWAY_")]:
            mp.delenv(k)
        for k, v in env.items():
            mp.setenv(k, v)
        with pytest.raises(ConfigError) as info:
            load_config(path)
    return info.value.problems


def test_non_utf8_file_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(EXAMPLE.read_bytes().replace(b"Riverside Garden, North", b"Riverside \xff"))
    [(where, _, msg)] = _problems(bad)
    line = EXAMPLE.read_text().splitlines().index('name = "Riverside Garden, North Gate"') + 1
    assert where == f"{bad}: line {line}"
    assert "not valid UTF-8" in msg
    assert "0xff" in msg


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 3000 + "]" * 3000 + "\n",  # tomllib recurses: RecursionError before
        "a = " + "{x = " * 800 + "1" + "}" * 800 + "\n",
        "[" + ".".join(["t"] * 3000) + "]\n",  # parses, but repr/validation recursed
    ],
    ids=["arrays", "inline-tables", "dotted-table"],
)
def test_deep_nesting_is_a_clear_error(tmp_path: Path, text: str) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text(text)
    [(where, _, msg)] = _problems(deep)
    assert where.startswith(str(deep))
    assert "nested deeper than" in msg


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[site]\nid = "x"\ngate = \n')
    [(where, _, msg)] = _problems(bad)
    assert where == f"{bad}: line 3"
    assert msg.startswith("not valid TOML")


@pytest.mark.timeout(20)
def test_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "gateway.toml"
    os.mkfifo(fifo)
    [(_, _, msg)] = _problems(fifo)
    assert msg == "not a regular file"


def test_oversized_file_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_text(EXAMPLE.read_text() + "#" * (2 * 1024 * 1024) + "\n")
    [(_, _, msg)] = _problems(big)
    assert "at most" in msg


def test_env_bad_json_names_the_variable() -> None:
    problems = _problems(EXAMPLE, GATEWAY_DOORS__MAIN_GATE__RELAY='{"kind": ')
    assert [p[0] for p in problems] == ["GATEWAY_DOORS__MAIN_GATE__RELAY"]
    assert "not valid JSON" in problems[0][2]
    problems = _problems(EXAMPLE, GATEWAY_SITE="{bad")
    assert problems[0][0] == "GATEWAY_SITE"


def test_env_deep_json_and_non_utf8_refused() -> None:
    [(name, _, msg)] = _problems(EXAMPLE, GATEWAY_MQTT="[" * 5000)
    assert name == "GATEWAY_MQTT"
    assert "nested deeper" in msg
    [(name, _, msg)] = _problems(EXAMPLE, GATEWAY_SITE__NAME="North \udcff gate")
    assert name == "GATEWAY_SITE__NAME"
    assert msg == "not valid UTF-8"


def test_readme_example_sets_the_dashed_door(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_DOORS__MAIN_GATE__UNLOCK_SECONDS", "7")
    cfg = load_config(EXAMPLE)
    assert set(cfg.doors) == {"main-gate", "side-door"}, "no phantom door main_gate"
    assert cfg.doors["main-gate"].unlock_seconds == 7


def test_env_naming_an_unknown_door_is_an_error() -> None:
    [(name, _, msg)] = _problems(EXAMPLE, GATEWAY_DOORS__FRONT_GATE__UNLOCK_SECONDS="7")
    assert name == "GATEWAY_DOORS__FRONT_GATE__UNLOCK_SECONDS"
    assert "door 'front_gate' is not configured" in msg


def test_cli_validate_prints_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xfe\xff[site]\n")
    assert main(["config", "validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"{bad}: line 1: not valid UTF-8 (byte 0xfe at column 1)"
    assert "Traceback" not in err


def test_sighup_reload_of_a_non_utf8_file_keeps_running(minimal_config: Path) -> None:
    cfg = load_config(minimal_config, env=False)
    daemon = Daemon(minimal_config, cfg)
    minimal_config.write_bytes(minimal_config.read_bytes() + b"\n# \xff\n")
    assert asyncio.run(daemon.reload()) is False
    assert daemon.cfg is cfg
    minimal_config.write_text("a = " + "[" * 3000 + "]" * 3000 + "\n")
    assert asyncio.run(daemon.reload()) is False


def test_problem_lines_stay_single_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text() + '\n[doors."a\\nb"]\nreader = "entry"\n')
    text = format_problems(_problems(bad))
    assert all(line.startswith("doors.") for line in text.splitlines()), text


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory", "missing"])
def test_secret_that_is_not_a_regular_file_is_a_clear_error(tmp_path: Path, kind: str) -> None:
    from gateway.config.base import SecretRef

    path = tmp_path / "site-key"
    if kind == "fifo":
        os.mkfifo(path)  # would block the daemon's start for ever
    elif kind == "dev-zero":
        path = Path("/dev/zero")  # would fill the memory
    elif kind == "directory":
        path.mkdir()
    with pytest.raises(ConfigError) as info:
        SecretRef(file=path).read_bytes()
    [(where, _, msg)] = info.value.problems
    assert where == str(path)
    assert msg.startswith("cannot read secret: ")
    assert ("not a regular file" if kind != "missing" else "no such file") in msg


def test_directory_as_config_file(tmp_path: Path) -> None:
    [(_, _, msg)] = _problems(tmp_path)
    assert msg == "not a regular file"


def test_env_plain_text_for_a_list_key_names_the_variable() -> None:
    problems = _problems(
        EXAMPLE, GATEWAY_DOORS__MAIN_GATE__METHODS="card", GATEWAY_DOORS__MAIN_GATE__READER="entry"
    )
    assert [p[0] for p in problems] == ["GATEWAY_DOORS__MAIN_GATE__METHODS"]
    assert "takes JSON (list)" in problems[0][2]
