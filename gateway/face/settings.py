"""Every knob of the face pipeline and of face matching: the one source of their defaults.

The configuration (``gateway.config.face``) takes its defaults from these dataclasses, so a
default is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Backend = Literal["onnxruntime", "opencv"]
#: ``backend = "auto"``: each stage on the runtime measured fastest for it on one CPU thread
#: (benchmarks/bench_face.py ``backends_ms``): YuNet on onnxruntime (OpenCV's DNN is several
#: times slower on it), SFace and MiniFASNet on OpenCV's DNN (about 2x and 5-10x faster
#: than onnxruntime on the same fp32 files).
AUTO_BACKEND: dict[str, Backend] = {
    "detector": "onnxruntime",
    "embedder": "opencv",
    "liveness": "opencv",
}
DEFAULT_DETECTOR_INPUT: tuple[int, int] = (320, 320)


@dataclass(frozen=True)
class QualityThresholds:
    """Limits of the quality gate: eye distance, pose, blur, exposure."""

    min_interocular_px: float = 28.0
    #: a face that passed the gate in the previous frame passes the size check down to this
    #: share of ``min_interocular_px`` (hysteresis: no flicker at the limit as someone walks up)
    tracked_size_ratio: float = 0.85
    max_yaw: float = 0.35
    max_roll_deg: float = 25.0
    pitch_range: tuple[float, float] = (0.2, 0.8)
    min_sharpness: float = 20.0
    min_brightness: float = 40.0
    max_brightness: float = 220.0


@dataclass(frozen=True)
class FaceSettings(QualityThresholds):
    """Face pipeline settings (plain values; the daemon maps its config onto them).

    The quality gate's limits are the inherited :class:`QualityThresholds` fields, so the
    settings are what :func:`gateway.face.quality.assess` takes.

    ``detector_input`` is (width, height), multiples of 32, or None to run the detector at
    the frame's own size padded to 32 (what ``cv2.FaceDetectorYN`` does). ``letterbox``
    keeps the aspect ratio (pad right/bottom); otherwise the frame is stretched.
    """

    detector_input: tuple[int, int] | None = DEFAULT_DETECTOR_INPUT
    letterbox: bool = True
    score_threshold: float = 0.7
    nms_threshold: float = 0.3
    top_k: int = 50
    flip_fusion: bool = False
    liveness_models: tuple[str, ...] = ("MiniFASNetV2.onnx", "MiniFASNetV1SE.onnx")
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = 2
    backend: Backend | Literal["auto"] = "auto"
    detector_backend: Backend | None = None
    embedder_backend: Backend | None = None
    liveness_backend: Backend | None = None
    warmup: bool = True

    def __post_init__(self) -> None:
        """Reject impossible values with a message naming the field."""
        from gateway.errors import ConfigError

        problems: list[tuple[str, str, str]] = []
        if self.detector_input is not None and any(d <= 0 or d % 32 for d in self.detector_input):
            problems.append(
                ("face.detector_input", str(self.detector_input), "must be multiples of 32")
            )
        for name in ("score_threshold", "nms_threshold"):
            v = getattr(self, name)
            if not 0 < v < 1:
                problems.append((f"face.{name}", str(v), "must be between 0 and 1"))
        if not 0.5 <= self.tracked_size_ratio <= 1.0:
            problems.append(
                ("face.tracked_size_ratio", str(self.tracked_size_ratio), "must be 0.5..1")
            )
        if self.threads < 1:
            problems.append(("face.threads", str(self.threads), "must be >= 1"))
        for name in ("backend", "detector_backend", "embedder_backend", "liveness_backend"):
            v = getattr(self, name)
            if v not in (None, "onnxruntime", "opencv") and (name, v) != ("backend", "auto"):
                allowed = (
                    "auto, onnxruntime or opencv" if name == "backend" else "onnxruntime or opencv"
                )
                problems.append((f"face.{name}", str(v), f"must be {allowed}"))
        if problems:
            raise ConfigError(problems)

    def backend_for(self, stage: Literal["detector", "embedder", "liveness"]) -> Backend:
        """The backend of one stage (its own setting, else ``backend``; ``auto``: the
        stage's entry in :data:`AUTO_BACKEND`)."""
        own: Backend | None = getattr(self, f"{stage}_backend")
        if own is not None:
            return own
        return AUTO_BACKEND[stage] if self.backend == "auto" else self.backend


@dataclass(frozen=True)
class MatchSettings:
    """How probes are matched against the gallery (defaults: benchmarks/results/REPORT.md).

    ``threshold`` is the cosine similarity that accepts a 1:N match (FPIR 0.1% with a
    218-person gallery), ``margin`` the lead it needs over the best other person,
    ``verify_threshold`` the similarity that confirms a claimed identity 1:1 (FMR 1e-4 on
    LFW DevTrain), ``liveness_threshold`` the live probability needed.
    """

    threshold: float = 0.51
    margin: float = 0.09
    liveness_threshold: float = 0.5
    verify_threshold: float = 0.42
