"""The configuration takes its face defaults and its enums from the domain: one of each."""

from __future__ import annotations

import dataclasses

from gateway.access.decision import LivenessPolicy, Method
from gateway.access.fusion import FusionSettings
from gateway.config.doors import DoorConfig
from gateway.config.face import FaceConfig
from gateway.face.settings import FaceSettings, MatchSettings

#: config key -> (settings object, field) for keys whose name differs in the domain
RENAMED = {
    "match_threshold": (MatchSettings(), "threshold"),
    "match_margin": (MatchSettings(), "margin"),
    "verify_threshold": (MatchSettings(), "verify_threshold"),
    "liveness_threshold": (MatchSettings(), "liveness_threshold"),
    "fusion_k": (FusionSettings(), "k"),
    "fusion_n": (FusionSettings(), "n"),
    "max_decision_age_ms": (FusionSettings(), "max_decision_age_ms"),
    "cooldown_s": (FusionSettings(), "cooldown_s"),
    "approach_gap_s": (FusionSettings(), "approach_gap_s"),
    "failed_attempts_before_fallback": (FusionSettings(), "failed_face_attempts_before_fallback"),
}


def _normal(value: object) -> object:
    return list(value) if isinstance(value, tuple | list) else value


def test_face_config_defaults_equal_the_domain_defaults() -> None:
    cfg = FaceConfig()
    pipeline = FaceSettings()
    shared = {f.name for f in dataclasses.fields(FaceSettings)} & set(FaceConfig.model_fields)
    assert {"score_threshold", "nms_threshold", "min_interocular_px"} <= shared
    for name in shared:
        assert _normal(getattr(cfg, name)) == _normal(getattr(pipeline, name)), name
    for key, (settings, field) in RENAMED.items():
        assert getattr(cfg, key) == getattr(settings, field), key


def test_config_uses_the_domain_enums() -> None:
    door = DoorConfig(reader="r", methods=["card", "face+pin"], liveness="advisory")
    assert door.methods == [Method.CARD, Method.FACE_PIN]
    assert all(type(m) is Method for m in door.methods)
    assert type(door.liveness) is LivenessPolicy
