"""Configuration of the on-device face pipeline and its decision tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from gateway.access.fusion import FusionSettings
from gateway.config.base import DEFAULT_STATE_DIR, Strict
from gateway.face.settings import DEFAULT_DETECTOR_INPUT, FaceSettings, MatchSettings

# The domain settings hold every default once; the fields below take theirs from them.
_PIPELINE = FaceSettings()
_MATCH = MatchSettings()
_FUSION = FusionSettings()
_SINGLE = _FUSION.single
_PAIR = _FUSION.pair


class FaceConfig(Strict):
    """The on-device face pipeline and its decision tuning."""

    enabled: bool = Field(True, description="Run face processing on cameras that allow it.")
    model_dir: Path = Field(
        DEFAULT_STATE_DIR / "models", description="Where converted models are installed."
    )
    backend: Literal["auto", "onnxruntime", "opencv"] = Field(
        _PIPELINE.backend,
        description="Inference runtime; auto: each model on the one measured fastest for it.",
    )
    providers: list[str] = Field(
        default_factory=lambda: list(_PIPELINE.providers),
        description="onnxruntime execution providers in preference order.",
    )
    threads: int = Field(
        _PIPELINE.threads, ge=1, le=16, description="Intra-op threads for inference."
    )
    detector_input: tuple[int, int] = Field(
        DEFAULT_DETECTOR_INPUT, description="Detector input (width, height), multiples of 32."
    )
    score_threshold: float = Field(
        _PIPELINE.score_threshold, gt=0, lt=1, description="Detection score threshold."
    )
    letterbox: bool = Field(
        _PIPELINE.letterbox,
        description="Keep the aspect ratio (pad) instead of stretching to the detector input.",
    )
    nms_threshold: float = Field(
        _PIPELINE.nms_threshold, gt=0, lt=1, description="Detector NMS IoU."
    )
    top_k: int = Field(_PIPELINE.top_k, ge=1, le=500, description="Most faces per frame.")
    max_yaw: float = Field(
        _PIPELINE.max_yaw, gt=0, le=1, description="Nose offset / eye distance limit."
    )
    max_roll_deg: float = Field(
        _PIPELINE.max_roll_deg, gt=0, le=90, description="Head roll limit (degrees)."
    )
    pitch_range: tuple[float, float] = Field(
        _PIPELINE.pitch_range, description="Nose height between the eye line and the mouth line."
    )
    min_brightness: float = Field(
        _PIPELINE.min_brightness, ge=0, le=255, description="Darkest mean grey accepted."
    )
    max_brightness: float = Field(
        _PIPELINE.max_brightness, ge=0, le=255, description="Brightest mean grey accepted."
    )
    liveness_threshold: float = Field(
        _MATCH.liveness_threshold,
        gt=0,
        lt=1,
        description="Live probability needed from the anti-spoof models.",
    )
    detector_backend: Literal["onnxruntime", "opencv"] | None = Field(
        None, description="Override of 'backend' for the detector."
    )
    embedder_backend: Literal["onnxruntime", "opencv"] | None = Field(
        None, description="Override of 'backend' for the embedder."
    )
    liveness_backend: Literal["onnxruntime", "opencv"] | None = Field(
        None, description="Override of 'backend' for the anti-spoof models."
    )
    warmup: bool = Field(_PIPELINE.warmup, description="Run each model once at load.")
    consistency_frames: int = Field(
        5, ge=2, le=15, description="Frames over which landmark motion is judged."
    )
    motion_check: Literal["off", "veto"] = Field(
        "off",
        description="Landmark-motion consistency: 'veto' denies faces whose landmarks move "
        "rigidly. Off by default: on YuNet's 5 landmarks it does not reliably separate a "
        "live head from a photo (README, Liveness); it never replaces the anti-spoof models.",
    )
    match_threshold: float = Field(
        _MATCH.threshold,
        gt=0,
        lt=1,
        description="Cosine similarity to accept a 1:N match (FPIR 0.1% with a 218-person "
        "gallery in benchmarks/results/REPORT.md; re-calibrate with 'gateway calibrate').",
    )
    verify_threshold: float = Field(
        _MATCH.verify_threshold,
        gt=0,
        lt=1,
        description="Cosine similarity to confirm a claimed identity 1:1 (face+card, "
        "face+pin): FMR 1e-4 on LFW DevTrain in benchmarks/results/REPORT.md.",
    )
    match_margin: float = Field(
        _MATCH.margin, ge=0, lt=1, description="Required lead over the best other person (1:N)."
    )
    flip_fusion: bool = Field(
        _PIPELINE.flip_fusion, description="Average embeddings of the face and its mirror."
    )
    min_interocular_px: float = Field(
        _PIPELINE.min_interocular_px,
        gt=0,
        description="Smallest eye distance accepted by the quality gate.",
    )
    tracked_size_ratio: float = Field(
        _PIPELINE.tracked_size_ratio,
        ge=0.5,
        le=1.0,
        description="Hysteresis of the size check: a face the gate accepted in the previous "
        "frame (same place, within 0.5 s) keeps passing down to this share of "
        "min_interocular_px, so a resident walking up at the size limit is not turned away "
        "frame by frame; 1.0 turns it off. Enrolment always uses the strict limit.",
    )
    min_sharpness: float = Field(
        _PIPELINE.min_sharpness,
        ge=0,
        description="Variance of the Laplacian below which a face is blurred.",
    )
    fusion_k: int = Field(
        _FUSION.k, ge=1, le=10, description="Grant when k of the last n frames match."
    )
    fusion_n: int = Field(_FUSION.n, ge=1, le=20, description="Window of frames for fusion.")
    max_decision_age_ms: int = Field(
        int(_FUSION.max_decision_age_ms),
        ge=50,
        le=5000,
        description="A recognition older than this never opens a door.",
    )
    cooldown_s: float = Field(
        _FUSION.cooldown_s,
        ge=0,
        le=600,
        description="One decision per person per approach within this.",
    )
    approach_gap_s: float = Field(
        _FUSION.approach_gap_s, gt=0, le=60, description="No face for this long ends an approach."
    )
    failed_attempts_before_fallback: int = Field(
        _FUSION.failed_face_attempts_before_fallback,
        ge=1,
        le=10,
        description="Failed face attempts after which PIN/card is offered.",
    )
    single_frame: bool = Field(
        _SINGLE.enabled,
        description="Decide on one frame when its evidence is strong (the single_frame_* "
        "bars); otherwise fuse fusion_k of fusion_n frames. 1:N only.",
    )
    single_frame_score: float = Field(
        _SINGLE.min_score,
        gt=0,
        lt=1,
        description="Cosine similarity one frame needs to be decided alone (>= "
        "match_threshold); calibrated held-out: benchmarks/eval_single_frame.py.",
    )
    single_frame_margin: float = Field(
        _SINGLE.min_margin,
        ge=0,
        lt=1,
        description="Lead over the runner-up person one frame needs to be decided alone "
        "(>= match_margin); calibrated with single_frame_score.",
    )
    single_frame_liveness: float = Field(
        _SINGLE.min_live,
        gt=0,
        lt=1,
        description="Live probability one frame needs to be decided alone on a door using "
        "liveness (>= liveness_threshold); doors with liveness off ignore it.",
    )
    single_frame_max_age_ms: int = Field(
        int(_SINGLE.max_age_ms),
        ge=10,
        le=5000,
        description="A frame older than this (capture to decision) is never decided alone "
        "(<= max_decision_age_ms).",
    )
    pair_frames: bool = Field(
        _PAIR.enabled,
        description="Decide on two consecutive frames of the same face whose mean score "
        "clears match_threshold (each within pair_frames_slack of it, each with "
        "match_margin), one of them matched on its own; such a pair counts as two of the "
        "fusion_k frames. 1:N only.",
    )
    pair_frames_slack: float = Field(
        _PAIR.slack,
        ge=0,
        le=0.05,
        description="How far below match_threshold either frame of a two-frame decision may "
        "score (at most 0.05, what benchmarks/eval_pair_frames.py measured); never below "
        "verify_threshold.",
    )
    enrol_images: int = Field(3, ge=1, le=20, description="Images asked for at enrolment.")

    @field_validator("detector_input")
    @classmethod
    def _multiple_of_32(cls, v: tuple[int, int]) -> tuple[int, int]:
        if any(d % 32 or d <= 0 for d in v):
            raise ValueError("detector input width and height must be positive multiples of 32")
        return v

    @model_validator(mode="after")
    def _k_le_n(self) -> Self:
        if self.fusion_k > self.fusion_n:
            raise ValueError("fusion_k cannot exceed fusion_n")
        return self

    @model_validator(mode="after")
    def _pair_floor_above_verify(self) -> Self:
        """A two-frame 1:N decision can meet a card or PIN claim made meanwhile (face+card):
        its frames must then clear the 1:1 bar too."""
        floor = self.match_threshold - self.pair_frames_slack
        if self.pair_frames and floor < self.verify_threshold:
            raise ValueError(
                f"pair_frames_slack ({self.pair_frames_slack}): match_threshold - "
                f"pair_frames_slack ({floor:.3f}) is below verify_threshold "
                f"({self.verify_threshold}); lower the slack or set pair_frames = false"
            )
        return self

    @model_validator(mode="after")
    def _single_frame_stricter(self) -> Self:
        """A single-frame bar written looser than its per-frame one is a contradiction.

        A default bar looser than a raised per-frame one is harmless: only faces that
        matched, are live and are fresh enough to open a door are ever decided alone, so the
        stricter of the two applies.
        """
        checks = (  # (single-frame field, per-frame field, the single-frame one must be...)
            ("single_frame_score", "match_threshold", 1),
            ("single_frame_margin", "match_margin", 1),
            ("single_frame_liveness", "liveness_threshold", 1),
            ("single_frame_max_age_ms", "max_decision_age_ms", -1),
        )
        for single, base, sign in checks:
            if single not in self.model_fields_set:
                continue
            if sign * (getattr(self, single) - getattr(self, base)) < 0:
                word = ">=" if sign > 0 else "<="
                raise ValueError(f"{single} ({getattr(self, single)}) must be {word} {base}")
        return self
