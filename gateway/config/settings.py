"""The one translation of the configuration into the settings of the domain modules."""

from __future__ import annotations

from gateway import access
from gateway.config.doors import DoorConfig
from gateway.config.root import GatewayConfig
from gateway.face.protection import threshold_scale
from gateway.face.settings import FaceSettings, MatchSettings


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
        methods=frozenset(d.methods),
        liveness=d.liveness,
        access_groups=frozenset(d.access_groups),
        roles=frozenset(access.Role(r) for r in d.roles) if d.roles else None,
        second_factor_timeout_s=d.second_factor_timeout_s,
        max_decision_age_ms=float(cfg.face.max_decision_age_ms),
    )


def fusion_settings(cfg: GatewayConfig, d: DoorConfig) -> access.FusionSettings:
    """How a door's face path fuses frames into one outcome."""
    f = cfg.face
    match = match_settings(cfg)
    return access.FusionSettings(
        k=f.fusion_k,
        n=f.fusion_n,
        max_decision_age_ms=f.max_decision_age_ms,
        cooldown_s=f.cooldown_s,
        approach_gap_s=f.approach_gap_s,
        failed_face_attempts_before_fallback=f.failed_attempts_before_fallback,
        liveness=d.liveness,
        single=access.SingleFrameRule(
            enabled=f.single_frame,
            min_score=f.single_frame_score,
            min_margin=f.single_frame_margin,
            min_live=f.single_frame_liveness,
            max_age_ms=float(f.single_frame_max_age_ms),
        ),
        # the face path's own bars (scaled under a cancelable protection), so the pair's
        # mean clears exactly what one frame must clear
        pair=access.PairRule(
            enabled=f.pair_frames,
            threshold=match.threshold,
            margin=match.margin,
            slack=f.pair_frames_slack * threshold_scale(cfg.privacy.template_protection),
        ),
    )


def match_settings(cfg: GatewayConfig) -> MatchSettings:
    """How a face path matches against the gallery (thresholds and margin).

    The thresholds are configured as cosine similarities; under a cancelable template
    protection they are scaled to keep the calibrated false-positive rate.
    """
    f = cfg.face
    scale = threshold_scale(cfg.privacy.template_protection)
    return MatchSettings(
        threshold=f.match_threshold * scale,
        margin=f.match_margin * scale,
        liveness_threshold=f.liveness_threshold,
        verify_threshold=f.verify_threshold * scale,
    )
