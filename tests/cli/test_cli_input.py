"""The command line refuses non-finite numbers, huge text and control characters with a
clear message and exit status 2, before anything is written (#18 item 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli.main import main


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_grace_days_refused(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "state.db"
    msg = _refused(["people", "list", "--db", str(db), f"--renotice-grace-days={value}"], capsys)
    assert "--renotice-grace-days" in msg
    assert "not a finite number" in msg


def test_100_kb_name_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "state.db"
    msg = _refused(["people", "add", "--db", str(db), "x" * 100_000], capsys)
    assert "100000 characters" in msg
    assert not db.exists(), "nothing was written"


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["people", "add", "Li\x1b[31mWei"], "name"),
        (["people", "add", "Li Wei", "--unit", "3-402\n"], "--unit"),
        (["people", "add", "Li\u202eieW"], "name"),
        (["people", "show", "p\x00"], "person"),
    ],
)
def test_control_characters_refused(
    argv: list[str], shown: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "state.db"
    msg = _refused([*argv, "--db", str(db)], capsys)
    assert f"argument {shown}: control character" in msg
    assert not db.exists()


def test_plain_unicode_names_still_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "state.db"
    assert main(["people", "add", "--db", str(db), "李伟 (Li Wei)", "--unit", "3-402"]) == 0
    assert capsys.readouterr().out.strip()
