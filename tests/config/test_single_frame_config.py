"""The single-frame bars in ``[face]``: defaults from the domain, contradictions rejected."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.access import FusionSettings
from gateway.config.face import FaceConfig

FIELDS = {
    "single_frame": "enabled",
    "single_frame_score": "min_score",
    "single_frame_margin": "min_margin",
    "single_frame_liveness": "min_live",
    "single_frame_max_age_ms": "max_age_ms",
}


def test_defaults_are_the_domain_rule() -> None:
    cfg, rule = FaceConfig(), FusionSettings().single
    for key, field in FIELDS.items():
        assert getattr(cfg, key) == getattr(rule, field), key
        assert FaceConfig.model_fields[key].description, key


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"match_threshold": 0.6, "single_frame_score": 0.55}, "single_frame_score"),
        ({"single_frame_margin": 0.05}, "single_frame_margin"),
        ({"liveness_threshold": 0.8, "single_frame_liveness": 0.7}, "single_frame_liveness"),
        ({"max_decision_age_ms": 200, "single_frame_max_age_ms": 300}, "single_frame_max_age"),
    ],
)
def test_a_written_bar_looser_than_the_per_frame_one_is_rejected(
    values: dict[str, float], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        FaceConfig(**values)  # type: ignore[arg-type]


def test_a_raised_per_frame_bar_with_default_single_bars_loads() -> None:
    cfg = FaceConfig(match_threshold=0.9, liveness_threshold=0.99, max_decision_age_ms=60)
    assert cfg.single_frame_score < cfg.match_threshold  # the stricter bar applies (domain)


def test_unknown_single_frame_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="single_frame_scor"):
        FaceConfig(single_frame_scor=0.7)  # type: ignore[call-arg]


def test_the_door_fusion_gets_the_configured_bars(minimal_config: Path) -> None:
    from gateway.config.root import load_config
    from gateway.config.settings import fusion_settings

    extra = (
        "\n[face]\nsingle_frame = false\nsingle_frame_score = 0.7\nsingle_frame_margin = 0.3\n"
        "single_frame_liveness = 0.95\nsingle_frame_max_age_ms = 120\n"
    )
    minimal_config.write_text(minimal_config.read_text() + extra)
    cfg = load_config(minimal_config, env=False)
    rule = fusion_settings(cfg, next(iter(cfg.doors.values()))).single
    assert (rule.enabled, rule.min_score, rule.min_margin, rule.min_live, rule.max_age_ms) == (
        False,
        0.7,
        0.3,
        0.95,
        120.0,
    )
    assert rule != FusionSettings().single  # the test values are not the defaults


def test_the_two_frame_rule_uses_the_doors_own_per_frame_bars(minimal_config: Path) -> None:
    """The pair's mean clears exactly what one frame must clear, also when the threshold is
    raised or scaled for a cancelable template protection."""
    from gateway.config.root import load_config
    from gateway.config.settings import fusion_settings, match_settings

    base = minimal_config.read_text()
    assert FaceConfig().pair_frames == FusionSettings().pair.enabled
    assert FaceConfig().pair_frames_slack == FusionSettings().pair.slack
    assert FaceConfig.model_fields["pair_frames_slack"].description
    extra = "\n[face]\nmatch_threshold = 0.6\nmatch_margin = 0.12\npair_frames_slack = 0.02\n"
    minimal_config.write_text(base + extra)
    cfg = load_config(minimal_config, env=False)
    rule = fusion_settings(cfg, next(iter(cfg.doors.values()))).pair
    match = match_settings(cfg)
    assert (rule.enabled, rule.threshold, rule.margin) == (True, match.threshold, match.margin)
    assert rule.floor == pytest.approx(0.58)
    minimal_config.write_text(base + "\n[face]\npair_frames = false\n")
    cfg = load_config(minimal_config, env=False)
    assert not fusion_settings(cfg, next(iter(cfg.doors.values()))).pair.enabled
    with pytest.raises(ValidationError, match="pair_frames_slack"):
        FaceConfig(pair_frames_slack=0.06)  # beyond what the evaluation measured
    with pytest.raises(ValidationError, match="below verify_threshold"):
        FaceConfig(verify_threshold=0.5)  # 0.51 - 0.02 < 0.5: a pair could meet a card
    assert FaceConfig(verify_threshold=0.5, pair_frames_slack=0.01).pair_frames
    assert not FaceConfig(verify_threshold=0.5, pair_frames=False).pair_frames
