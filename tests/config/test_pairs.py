"""Camera pairs: a door's second view (stereo or NIR), its rules and their messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.root import load_config
from gateway.errors import ConfigError
from tests.conftest import REPO

EXAMPLE = REPO / "config" / "gateway.example.toml"
SECOND = """
[cameras.north-right]
source = "rtsp://192.0.2.11/stream1"
door = "{door}"
width = {width}
height = 480
fps = 15
space = "public"
signage_installed = {signage}
"""


def _config(
    tmp_path: Path, pair: str, *, door: str = "main-gate", width: int = 640, signage: str = "true"
) -> Path:
    text = EXAMPLE.read_text()
    anchor = 'camera = "north-cam"\n'
    assert anchor in text
    text = text.replace(anchor, anchor + pair + "\n", 1)
    text += SECOND.format(door=door, width=width, signage=signage)
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def _problems(path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=False)
    return {p: m for p, _, m in info.value.problems}


def test_a_stereo_pair_of_two_streams(tmp_path: Path) -> None:
    cfg = load_config(
        _config(
            tmp_path,
            'pair = { kind = "stereo", camera = "north-right", calibration = "/etc/p.json", '
            "baseline_mm = 60 }",
        ),
        env=False,
    )
    pair = cfg.doors["main-gate"].pair
    assert pair is not None
    assert (pair.kind, pair.layout, pair.camera, pair.baseline_mm) == (
        "stereo",
        "two_streams",
        "north-right",
        60.0,
    )


SIDE_BY_SIDE = (
    'pair = { kind = "stereo", layout = "side_by_side", calibration = "/etc/p.json", '
    "baseline_mm = 60 }"
)


def test_a_side_by_side_usb_stereo_camera(tmp_path: Path) -> None:
    cfg = load_config(
        _config(tmp_path, SIDE_BY_SIDE),
        env=False,
    )
    assert cfg.doors["main-gate"].pair is not None


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ('pair = { kind = "stereo", calibration = "/p.json", baseline_mm = 60 }', "needs 'camera'"),
        (
            'pair = { kind = "stereo", camera = "north-right", baseline_mm = 60 }',
            "needs its 'calibration'",
        ),
        (
            'pair = { kind = "rgb+nir", layout = "side_by_side", baseline_mm = 30 }',
            "needs its 'calibration'",
        ),
        (
            (
                'pair = { kind = "stereo", layout = "side_by_side", camera = "north-right", '
                'calibration = "/p.json", baseline_mm = 60 }'
            ),
            "remove 'camera'",
        ),
        (
            (
                'pair = { kind = "stereo", camera = "north-right", calibration = "/p.json", '
                "baseline_mm = 5 }"
            ),
            "greater than 10",
        ),
        (
            (
                'pair = { kind = "stereo", camera = "north-right", calibration = "/p.json", '
                'baseline_mm = 60, colour = "red" }'
            ),
            "unknown key",
        ),
    ],
)
def test_bad_pairs_are_named(tmp_path: Path, pair: str, message: str) -> None:
    problems = _problems(_config(tmp_path, pair))
    assert any(
        k.startswith("doors.main-gate.pair") and message in m for k, m in problems.items()
    ), problems


PAIR = 'pair = {{ kind = "rgb+nir", camera = "{cam}", calibration = "/p.json", baseline_mm = 40 }}'


def test_the_second_view_must_exist_and_differ(tmp_path: Path) -> None:
    problems = _problems(_config(tmp_path, PAIR.format(cam="nowhere")))
    assert "is not configured" in problems["doors.main-gate.pair.camera"]
    problems = _problems(_config(tmp_path, PAIR.format(cam="north-cam")))
    assert "another camera" in problems["doors.main-gate.pair.camera"]


def test_the_second_view_serves_the_door_with_signage_and_the_same_size(tmp_path: Path) -> None:
    problems = _problems(
        _config(
            tmp_path, PAIR.format(cam="north-right"), door="side-door", width=800, signage="false"
        )
    )
    assert "must serve that door" in problems["cameras.north-right.door"]
    assert "signage" in problems["cameras.north-right.signage_installed"]
    assert "same frame size" in problems["cameras.north-right.width"]


def test_doctor_fails_a_pair_door_without_the_landmark_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli.doctor import check_models
    from gateway.face import models

    cfg = load_config(
        _config(tmp_path, SIDE_BY_SIDE),
        env=False,
    )
    cfg.face.model_dir = tmp_path / "models"
    monkeypatch.setattr(models, "verify", lambda _d: [])  # YuNet/SFace: not the point here
    check = check_models(cfg)
    assert check.status == "FAIL"
    assert "main-gate (camera pair)" in check.detail


def test_doctor_needs_no_landmark_model_for_an_rgb_nir_door(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli.doctor import check_models
    from gateway.face import models

    nir = (
        'pair = { kind = "rgb+nir", layout = "side_by_side", calibration = "/etc/p.json", '
        "baseline_mm = 25 }"
    )
    cfg = load_config(_config(tmp_path, nir), env=False)
    cfg.face.model_dir = tmp_path / "models"
    monkeypatch.setattr(models, "verify", lambda _d: [])
    assert check_models(cfg).status == "PASS"
