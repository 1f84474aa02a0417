"""The one translation of the configuration into the settings of the domain modules."""

from __future__ import annotations

from gateway import access
from gateway.config.doors import DoorConfig
from gateway.config.root import GatewayConfig
from gateway.face.settings import FaceSettings


def face_settings(cfg: GatewayConfig) -> FaceSettings:
    """The face pipeline settings configured in ``[face]``."""
    f = cfg.face
    return FaceSettings(
        detector_input=f.detector_input,
        letterbox=f.letterbox,
        score_threshold=f.score_threshold,
        nms_threshold=f.nms_threshold,
        top_k=f.top_k,
        min_interocular_px=f.min_interocular_px,
        tracked_size_ratio=f.tracked_size_ratio,
        max_yaw=f.max_yaw,
        max_roll_deg=f.max_roll_deg,
        pitch_range=f.pitch_range,
        min_sharpness=f.min_sharpness,
        min_brightness=f.min_brightness,
        max_brightness=f.max_brightness,
        flip_fusion=f.flip_fusion,
        providers=tuple(f.providers),
        threads=f.threads,
        backend=f.backend,
        detector_backend=f.detector_backend,
        embedder_backend=f.embedder_backend,
        liveness_backend=f.liveness_backend,
        warmup=f.warmup,
    )


def door_policy(d: DoorConfig, cfg: GatewayConfig) -> access.DoorPolicy:
    """The policy engine's rules for one configured door."""
    return access.DoorPolicy(
        methods=frozenset(access.Method(m.value) for m in d.methods),
        liveness=access.LivenessPolicy(d.liveness.value),
        access_groups=frozenset(d.access_groups),
        roles=frozenset(access.Role(r) for r in d.roles) if d.roles else None,
        second_factor_timeout_s=d.second_factor_timeout_s,
        max_decision_age_ms=float(cfg.face.max_decision_age_ms),
    )
