"""Configuration: strictness, key paths, cross-field rules, env overrides, secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.access.decision import Method
from gateway.config.root import GatewayConfig, load_config
from gateway.errors import ConfigError
from tests.conftest import REPO

EXAMPLE = REPO / "config" / "gateway.example.toml"


def _problems(path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=False)
    return {p: m for p, _, m in info.value.problems}


def test_example_config_is_valid_and_realistic() -> None:
    cfg = load_config(EXAMPLE, env=False)
    assert set(cfg.doors) == {"main-gate", "side-door"}
    assert cfg.face_doors() == ["main-gate"]
    assert cfg.doors["side-door"].methods == [Method.CARD_PIN]
    assert cfg.cameras["north-cam"].zones, "the example shows a no-capture zone"


def test_minimal_config_is_valid(minimal_config: Path) -> None:
    cfg = load_config(minimal_config, env=False)
    assert cfg.site.gate == "gate-1"
    assert cfg.face_doors() == []


def _edit(src: Path, dst: Path, old: str, new: str) -> Path:
    text = src.read_text()
    assert old in text, old
    dst.write_text(text.replace(old, new, 1))
    return dst


def test_unknown_key_wrong_type_dangling_reference_face_only_all_reported(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.toml"
    text = EXAMPLE.read_text()
    text = text.replace('name = "Riverside Garden, North Gate"', 'colour = "red"')
    text = text.replace("unlock_seconds = 5\n", 'unlock_seconds = "long"\n', 1)
    text = text.replace('reader = "side"', 'reader = "nowhere"')
    text = text.replace('methods = ["face", "card", "pin", "card+pin"]', 'methods = ["face"]')
    bad.write_text(text)
    problems = _problems(bad)
    assert problems["site.colour"] == "unknown key"
    assert "valid number" in problems["doors.main-gate.unlock_seconds"]
    assert problems["doors.side-door.reader"] == "reader 'nowhere' is not configured"
    assert "Art. 10" in problems["doors.main-gate.methods"]


def test_face_plus_card_only_is_still_face_dependent(tmp_path: Path) -> None:
    bad = _edit(
        EXAMPLE,
        tmp_path / "x.toml",
        'methods = ["face", "card", "pin", "card+pin"]',
        'methods = ["face", "face+card"]',
    )
    assert "Art. 10" in _problems(bad)["doors.main-gate.methods"]


def test_private_space_camera_refused_naming_the_rule(tmp_path: Path) -> None:
    bad = _edit(EXAMPLE, tmp_path / "x.toml", 'space = "public"', 'space = "private"')
    msg = _problems(bad)["cameras.north-cam.space"]
    assert "private spaces (Art. 13)" in msg
    assert "no role can override" in msg


def test_face_needs_signage_and_impact_assessment(tmp_path: Path) -> None:
    step = _edit(
        EXAMPLE, tmp_path / "a.toml", "signage_installed = true", "signage_installed = false"
    )
    bad = _edit(
        step,
        tmp_path / "b.toml",
        'impact_assessment = { reference = "PIA-2026-014", date = 2026-05-10 }\n',
        "",
    )
    problems = _problems(bad)
    assert "signage" in problems["cameras.north-cam.signage_installed"]
    assert "Art. 9" in problems["privacy.impact_assessment"]


def test_camera_for_missing_door_and_osdp_binding_without_reader(tmp_path: Path) -> None:
    step = _edit(EXAMPLE, tmp_path / "a.toml", 'door = "main-gate"', 'door = "back-gate"')
    problems = _problems(step)
    assert problems["cameras.north-cam.door"] == "door 'back-gate' is not configured"
    bad = _edit(
        EXAMPLE,
        tmp_path / "b.toml",
        'relay = { kind = "gpio", line = 17, lock_type = "fail_secure" }',
        'relay = { kind = "gpio", lock_type = "fail_secure" }',
    )
    assert "line number" in _problems(bad)["doors.side-door.relay.line"]


def test_zone_outside_unit_square_and_detector_size(tmp_path: Path) -> None:
    step = _edit(EXAMPLE, tmp_path / "a.toml", "[1.0, 0.40]", "[1.5, 0.40]")
    assert "outside 0..1" in _problems(step)["cameras.north-cam.zones.0.polygon"]


def test_inline_secret_is_not_accepted(tmp_path: Path) -> None:
    bad = _edit(
        EXAMPLE,
        tmp_path / "a.toml",
        'password = { credential = "mqtt-password" }',
        'password = "hunter2"',
    )
    assert "mqtt.password" in _problems(bad)


def test_environment_overrides_nested_fields(
    minimal_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_DOORS__MAIN__UNLOCK_SECONDS", "9")
    monkeypatch.setenv("GATEWAY_RUNTIME__LOG_LEVEL", "DEBUG")
    cfg = load_config(minimal_config)
    assert cfg.doors["main"].unlock_seconds == 9
    assert cfg.runtime.log_level == "DEBUG"
    monkeypatch.setenv("GATEWAY_RUNTIME__LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError) as info:
        load_config(minimal_config)
    assert info.value.problems[0][0] == "runtime.log_level"


def test_secret_from_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.config.base import SecretRef

    (tmp_path / "site-key").write_bytes(b"abc\n")
    ref = SecretRef(credential="site-key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert ref.read_bytes() == b"abc"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY"):
        ref.read_bytes()


def test_every_field_is_described() -> None:
    missing: list[str] = []
    seen: set[type] = set()

    def walk(model: type, path: str) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            if not field.description:
                missing.append(f"{path}.{name}")
            from gateway.config.reference import _models

            for sub in _models(field.annotation):
                walk(sub, f"{path}.{name}")

    walk(GatewayConfig, "")
    assert not missing, missing


def test_validate_cli_prints_key_path_value_and_exits_2(tmp_path: Path) -> None:
    bad = _edit(EXAMPLE, tmp_path / "a.toml", 'space = "public"', 'space = "private"')
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "config", "validate", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("cameras.north-cam.space: no face processing in private spaces")
    assert "(value: 'private')" in lines[0]
    ok = subprocess.run(
        [sys.executable, "-m", "gateway", "config", "validate", str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "x.toml"
    broken.write_text("[site\nid=")
    assert "not valid TOML" in next(iter(_problems(broken).values()))
    assert "not found" in next(iter(_problems(tmp_path / "nope.toml").values()))


def test_schema_and_reference_are_in_sync() -> None:
    from gateway.config.reference import reference_markdown

    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed == reference_markdown(), (
        "docs/configuration.md is stale: run `gateway config reference > docs/configuration.md`"
    )
    schema = subprocess.run(
        [sys.executable, "-m", "gateway", "config", "schema"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"additionalProperties": false' in schema.stdout


def test_binary_secret_is_not_trimmed_but_text_secret_is(tmp_path: Path) -> None:
    from gateway.config.base import SecretRef

    raw = bytes(range(1, 31)) + b" \n"  # a random key may end in bytes that look like space
    (tmp_path / "k").write_bytes(raw)
    assert SecretRef(file=tmp_path / "k").read_bytes() == raw
    (tmp_path / "p").write_bytes(b"hunter2\n")
    assert SecretRef(file=tmp_path / "p").read_bytes() == b"hunter2"


def test_one_gpio_line_cannot_serve_two_inputs(minimal_config: Path, tmp_path: Path) -> None:
    bad = _edit(
        minimal_config,
        tmp_path / "gpio.toml",
        'relay = { kind = "osdp", output = 0 }',
        'relay = { kind = "osdp", output = 0 }\n'
        'contact = { kind = "gpio", chip = "/dev/gpiochip0", line = 17 }\n'
        'exit_button = { kind = "gpio", chip = "/dev/gpiochip0", line = 17 }',
    )
    problems = _problems(bad)
    assert problems["doors.main.exit_button.line"] == (
        "GPIO line /dev/gpiochip0:17 is already used by doors.main.contact"
    )
