"""The configuration -> domain settings translation, and its users (issue #14)."""

from __future__ import annotations

import dataclasses
import io
import secrets
from pathlib import Path
from typing import Any

import pytest

from gateway import access
from gateway.config.root import load_config
from gateway.config.settings import door_policy, face_settings, fusion_settings, match_settings
from gateway.face.pipeline import FacePipeline
from gateway.face.settings import FaceSettings, MatchSettings
from tests.privacy.conftest import NOTICE_EN, write_key
from tests.privacy.test_commands import _run
from tests.privacy.test_enroll import FakePipeline, _img

#: every value differs from its FaceSettings default
FACE = """
[face]
detector_input = [640, 480]
letterbox = false
score_threshold = 0.55
nms_threshold = 0.4
top_k = 20
min_interocular_px = 40.0
tracked_size_ratio = 0.9
max_yaw = 0.3
max_roll_deg = 20.0
pitch_range = [0.25, 0.75]
min_sharpness = 30.0
min_brightness = 50.0
max_brightness = 200.0
flip_fusion = true
providers = ["XnnpackExecutionProvider", "CPUExecutionProvider"]
threads = 3
backend = "opencv"
detector_backend = "onnxruntime"
embedder_backend = "onnxruntime"
liveness_backend = "onnxruntime"
warmup = false
max_decision_age_ms = 800
fusion_k = 3
fusion_n = 4
cooldown_s = 5.0
approach_gap_s = 2.0
failed_attempts_before_fallback = 2
match_threshold = 0.6
match_margin = 0.12
liveness_threshold = 0.7
verify_threshold = 0.45
"""


@pytest.fixture
def face_config(minimal_config: Path) -> Path:
    minimal_config.write_text(minimal_config.read_text() + FACE)
    return minimal_config


def test_face_settings_carry_every_configured_value(face_config: Path) -> None:
    cfg = load_config(face_config, env=False)
    got = face_settings(cfg)
    default = FaceSettings()
    mapped = [f.name for f in dataclasses.fields(FaceSettings) if hasattr(cfg.face, f.name)]
    assert len(mapped) == 21
    for name in mapped:
        want = getattr(cfg.face, name)
        assert getattr(got, name) == (tuple(want) if isinstance(want, list) else want), name
        assert getattr(got, name) != getattr(default, name), f"{name}: test value is a default"


def test_door_policy_from_config(face_config: Path) -> None:
    cfg = load_config(face_config, env=False)
    policy = door_policy(cfg.doors["main"], cfg)
    assert policy.methods == {access.Method.CARD, access.Method.PIN, access.Method.CARD_PIN}
    assert policy.max_decision_age_ms == 800.0


def test_fusion_and_match_settings_from_config(face_config: Path) -> None:
    cfg = load_config(face_config, env=False)
    fusion = fusion_settings(cfg, cfg.doors["main"])
    want = (3, 4, 800, 5.0, 2.0, 2, cfg.doors["main"].liveness)
    got = (
        fusion.k,
        fusion.n,
        fusion.max_decision_age_ms,
        fusion.cooldown_s,
        fusion.approach_gap_s,
        fusion.failed_face_attempts_before_fallback,
        fusion.liveness,
    )
    assert got == want
    assert access.FusionSettings().k != 3  # the test values are not the defaults
    assert match_settings(cfg) == MatchSettings(0.6, 0.12, 0.7, 0.45)
    assert MatchSettings() != MatchSettings(0.6, 0.12, 0.7, 0.45)


def test_office_enrolment_uses_the_configured_face_settings(
    face_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: ``gateway enroll --config`` loaded the pipeline with FaceSettings()."""
    notice = tmp_path / "notice.txt"
    notice.write_text(NOTICE_EN, encoding="utf-8")
    db = ["--db", str(tmp_path / "office.db")]
    keys = [
        "--device-key",
        str(write_key(tmp_path / "k" / "device-key", secrets.token_hex(32).encode())),
        "--site-key",
        str(write_key(tmp_path / "k" / "site-key", secrets.token_bytes(32))),
    ]
    assert _run(["people", "add", "Zhang San", *db]) == 0
    pid = capsys.readouterr().out.strip()
    assert _run(["consent", "grant", pid, "--method", "paper", *db, "--notice-file", str(notice),
                 "--notice-version", "1"]) == 0  # fmt: skip
    monkeypatch.setattr("sys.stdin", io.StringIO("24680\n"))
    assert _run(["people", "set-pin", pid, *db, *keys]) == 0
    loaded: list[tuple[Path, Any]] = []

    def load(model_dir: Path, settings: Any = None) -> FakePipeline:
        loaded.append((model_dir, settings))
        return FakePipeline()

    monkeypatch.setattr(FacePipeline, "load", load)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    _img(imgs / "a.png", 10)
    argv = ["--config", str(face_config), "enroll", pid, "--images", str(imgs), *db, *keys]
    assert _run(argv) == 0
    cfg = load_config(face_config, env=False)
    assert loaded == [(cfg.face.model_dir, face_settings(cfg))]
    assert loaded[0][1].score_threshold == 0.55
