"""FacePipeline: detect -> quality -> align -> embed (batched) -> liveness, on one frame."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gateway.errors import ModelError
from gateway.face import models
from gateway.face.align import align
from gateway.face.detector import Detection, Detector, OpenCVYuNet, OrtYuNet
from gateway.face.embedder import Embedder, OpenCVSFace, OrtSFace
from gateway.face.image import as_bgr
from gateway.face.liveness import AntiSpoof
from gateway.face.quality import QualityVerdict, assess
from gateway.face.settings import FaceSettings

__all__ = ["EnrolmentSample", "FaceObservation", "FacePipeline", "FaceSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceObservation:
    """One face in a frame: where, how good, how live, and its embedding when good enough."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    det_score: float
    quality: QualityVerdict
    liveness: float | None
    embedding: np.ndarray | None
    #: the camera pair's check (3-D or NIR): True/False, None when not measured (no pair, not the
    #: largest good face, frames not matched, no face found in the second view)
    relief: bool | None = None


@dataclass(frozen=True)
class EnrolmentSample:
    """Result of :meth:`FacePipeline.embed_image`.

    ``verdict`` is ``ok``, ``no_face``, ``several_faces`` or ``low_quality`` (then ``reason``
    says why); ``embedding`` is set only when ``ok``.
    """

    verdict: str
    reason: str | None = None
    embedding: np.ndarray | None = None
    quality: QualityVerdict | None = None
    det_score: float | None = None
    faces: int = 0

    @property
    def ok(self) -> bool:
        """True when the image gave a usable template."""
        return self.verdict == "ok"


@dataclass
class PipelineStats:
    """Milliseconds spent in each stage of the last :meth:`FacePipeline.analyze` call."""

    detect_ms: float = 0.0
    align_quality_ms: float = 0.0
    embed_ms: float = 0.0
    liveness_ms: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


Box = tuple[float, float, float, float]
#: overlap with a previous frame's accepted face that makes a detection "the same face"
TRACK_IOU = 0.3


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


class FacePipeline:
    """The loaded models plus settings. Not thread-safe: use one per worker thread."""

    def __init__(
        self,
        detector: Detector,
        embedder: Embedder,
        antispoof: AntiSpoof | None,
        settings: FaceSettings,
    ) -> None:
        """Prefer :meth:`load`; this takes ready components (tests inject fakes)."""
        self.detector = detector
        self.embedder = embedder
        self.antispoof = antispoof
        self.settings = settings
        self.stats = PipelineStats()

    @classmethod
    def load(cls, model_dir: Path, settings: FaceSettings | None = None) -> FacePipeline:
        """Verify hashes, load every model, warm up. ModelError names the bad file."""
        s = settings or FaceSettings()
        paths = models.require(Path(model_dir))
        if "opencv" in {s.backend_for(k) for k in ("detector", "embedder", "liveness")}:
            import cv2

            # OpenCV's DNN uses every core by default; ``threads`` bounds it as it does
            # onnxruntime's intra-op pool (cv2's setting is process-wide).
            cv2.setNumThreads(s.threads)
        det: Detector
        if s.backend_for("detector") == "opencv":
            det = OpenCVYuNet(paths[models.YUNET], s)
        else:
            det = OrtYuNet(paths[models.YUNET], s)
        emb: Embedder
        if s.backend_for("embedder") == "opencv":
            emb = OpenCVSFace(paths[models.SFACE], flip_fusion=s.flip_fusion)
        else:
            emb = OrtSFace(
                paths[models.SFACE],
                flip_fusion=s.flip_fusion,
                providers=s.providers,
                threads=s.threads,
            )
        spoof_paths = [paths[n] for n in s.liveness_models if n in paths]
        anti = (
            AntiSpoof.load(
                spoof_paths,
                backend=s.backend_for("liveness"),
                providers=s.providers,
                threads=s.threads,
            )
            if spoof_paths
            else None
        )
        if anti is None:
            log.warning("face: no anti-spoofing model in %s; liveness unavailable", model_dir)
        pipe = cls(det, emb, anti, s)
        if s.warmup:
            pipe.warm_up()
        return pipe

    @property
    def has_liveness(self) -> bool:
        """True when an anti-spoofing model is loaded."""
        return self.antispoof is not None

    def warm_up(self) -> None:
        """Run each model once so the first real frame is not slow."""
        try:
            frame = np.full((480, 640, 3), 128, np.uint8)
            self.detector.detect(frame)
            self.embedder.embed([np.full((112, 112, 3), 128, np.uint8)])
            if self.antispoof is not None:
                self.antispoof.live_probability(frame, (280.0, 200.0, 80.0, 100.0))
        except Exception as exc:
            raise ModelError(f"face models fail at warm-up: {exc}") from exc

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """Detections only (validated frame)."""
        return self.detector.detect(as_bgr(frame_bgr, what="frame"))

    def analyze(
        self,
        frame_bgr: np.ndarray,
        *,
        liveness: bool = True,
        tracked: Sequence[Box] = (),
    ) -> list[FaceObservation]:
        """Every face in the frame; embeddings only for faces that pass the quality gate.

        ImageError for an unusable frame. Liveness is measured for the largest face that
        passed the quality gate only (the face the gate decides on); ``liveness`` is None for
        every other face, when not asked, or when no anti-spoofing model is installed.
        ``tracked``: boxes of faces that passed the gate in the previous frame; a face
        overlapping one gets the gate's size hysteresis (``tracked_size_ratio``).
        """
        frame = as_bgr(frame_bgr, what="frame")
        t0 = time.perf_counter()
        dets = self.detector.detect(frame)
        t1 = time.perf_counter()
        crops, verdicts = [], []
        for d in dets:
            crop = align(frame, d.landmarks)
            crops.append(crop)
            near = any(iou(d.box, b) >= TRACK_IOU for b in tracked)
            verdicts.append(assess(d.landmarks, crop, self.settings, tracked=near))
        t2 = time.perf_counter()
        good = [i for i, v in enumerate(verdicts) if v.ok]
        embs = self.embedder.embed([crops[i] for i in good]) if good else None
        t3 = time.perf_counter()
        emb_of = {i: embs[j] for j, i in enumerate(good)} if embs is not None else {}
        live: dict[int, float] = {}
        if liveness and self.antispoof is not None and good:
            subject = max(good, key=lambda i: dets[i].box[2] * dets[i].box[3])
            live[subject] = self.antispoof.live_probability(frame, dets[subject].box)
        t4 = time.perf_counter()
        self.stats = PipelineStats(
            (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t4 - t3) * 1e3
        )
        return [
            FaceObservation(
                box=d.box,
                landmarks=d.landmarks,
                det_score=d.score,
                quality=verdicts[i],
                liveness=live.get(i),
                embedding=emb_of.get(i),
            )
            for i, d in enumerate(dets)
        ]

    def embed_image(self, image_bgr: np.ndarray) -> EnrolmentSample:
        """Enrolment: exactly one good-quality face, else a verdict saying why not."""
        obs = self.analyze(image_bgr, liveness=False)
        if not obs:
            return EnrolmentSample("no_face")
        if len(obs) > 1:
            return EnrolmentSample("several_faces", faces=len(obs))
        o = obs[0]
        if o.embedding is None:
            return EnrolmentSample("low_quality", o.quality.reason, None, o.quality, o.det_score, 1)
        return EnrolmentSample("ok", None, o.embedding, o.quality, o.det_score, 1)

    def describe(self) -> dict[str, Any]:
        """What is loaded (for logs and the doctor command)."""
        s = self.settings
        return {
            "detector": type(self.detector).__name__,
            "embedder": type(self.embedder).__name__,
            "liveness": self.antispoof is not None,
            "detector_input": s.detector_input,
            "providers": list(s.providers),
            "threads": s.threads,
        }
