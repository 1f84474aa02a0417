"""Passive liveness: MiniFASNet ensemble, per-door policy, multi-frame consistency.

Never a blink or head-turn challenge (accessibility): only what the camera sees anyway.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import deque
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gateway.errors import ModelError

#: Model file -> crop scale around the face box centre (minivision's Silent-Face practice).
CROP_SCALE = {"MiniFASNetV2.onnx": 2.7, "MiniFASNetV1SE.onnx": 4.0}
INPUT = 80


def crop_box(
    box: tuple[float, float, float, float], scale: float, frame_w: int, frame_h: int
) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) inclusive: the box scaled around its centre, shifted to stay inside."""
    x, y, bw, bh = box
    scale = min((frame_h - 1) / max(bh, 1e-6), (frame_w - 1) / max(bw, 1e-6), scale)
    nw, nh = bw * scale, bh * scale
    cx, cy = x + bw / 2, y + bh / 2
    x1, y1, x2, y2 = cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2
    if x1 < 0:
        x2 -= x1
        x1 = 0
    if y1 < 0:
        y2 -= y1
        y1 = 0
    if x2 > frame_w - 1:
        x1 -= x2 - frame_w + 1
        x2 = frame_w - 1
    if y2 > frame_h - 1:
        y1 -= y2 - frame_h + 1
        y2 = frame_h - 1
    return int(x1), int(y1), int(x2), int(y2)


def liveness_input(
    frame_bgr: np.ndarray, box: tuple[float, float, float, float], scale: float
) -> np.ndarray:
    """1x3x80x80 float32 BGR 0..255 input for one MiniFASNet."""
    import cv2

    h, w = frame_bgr.shape[:2]
    x1, y1, x2, y2 = crop_box(box, scale, w, h)
    crop = cv2.resize(frame_bgr[y1 : y2 + 1, x1 : x2 + 1], (INPUT, INPUT))
    return np.ascontiguousarray(crop.transpose(2, 0, 1)[None], dtype=np.float32)


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


class AntiSpoof:
    """MiniFASNetV2 / V1SE ensemble: average of the softmaxes, class 1 = live."""

    def __init__(self, models: list[tuple[Any, str, float]], backend: str) -> None:
        """Use :meth:`load`."""
        self.models = models
        self.backend = backend
        # OpenCV nets are not safe to run from two threads at once (shared pipeline).
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        paths: list[Path],
        *,
        backend: str = "onnxruntime",
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        threads: int = 1,
    ) -> AntiSpoof:
        """Load the given MiniFASNet files (names must be known to CROP_SCALE)."""
        models: list[tuple[Any, str, float]] = []
        for p in paths:
            if p.name not in CROP_SCALE:
                raise ModelError(f"unknown anti-spoofing model {p}")
            if backend == "opencv":
                import cv2

                try:
                    net: Any = cv2.dnn.readNetFromONNX(str(p))
                except cv2.error as exc:
                    raise ModelError(f"OpenCV cannot load {p}: {exc}") from exc
                models.append((net, "", CROP_SCALE[p.name]))
            else:
                from gateway.face.runtime import ort_session

                sess = ort_session(p, providers, threads)
                models.append((sess, sess.get_inputs()[0].name, CROP_SCALE[p.name]))
        if not models:
            raise ModelError("no anti-spoofing model given")
        return cls(models, backend)

    def live_probability(
        self, frame_bgr: np.ndarray, box: tuple[float, float, float, float]
    ) -> float:
        """Probability (0..1) that the face in ``box`` is a live person."""
        probs = []
        for model, input_name, scale in self.models:
            blob = liveness_input(frame_bgr, box, scale)
            if self.backend == "opencv":
                with self._lock:
                    model.setInput(blob)
                    logits = np.asarray(model.forward(), np.float32)
            else:
                logits = model.run(None, {input_name: blob})[0]
            probs.append(softmax(np.asarray(logits, np.float64).reshape(1, -1))[0])
        return float(np.mean(probs, axis=0)[1])


@dataclass(frozen=True)
class ConsistencyVerdict:
    """Multi-frame consistency of one tracked face.

    ``state``: ``pending`` (fewer than K frames), ``live`` (natural non-rigid motion),
    ``static`` (landmarks do not move at all), ``rigid`` (all motion explained by one
    affine map, as for a photo or screen moved about).
    """

    state: str
    frames: int
    motion: float  # median landmark displacement / eye distance over the window
    nonrigid: float  # median affine-fit residual / eye distance over the window

    @property
    def live(self) -> bool:
        """True only for natural motion."""
        return self.state == "live"


def affine_residual(a: np.ndarray, b: np.ndarray) -> float:
    """RMS residual of the best affine map taking 5 points ``a`` onto ``b``."""
    src = np.hstack([a, np.ones((len(a), 1))])
    sol, *_ = np.linalg.lstsq(src, b, rcond=None)
    return float(np.sqrt(((src @ sol - b) ** 2).sum(axis=1).mean()))


@dataclass(eq=False)
class ConsistencyTracker:
    """Pure multi-frame check: a face must persist K frames with natural landmark motion.

    Feed it every detection of the tracked face with the time (``now``, seconds, from an
    injected clock). A gap longer than ``max_gap_s`` or a jump of the face centre by more
    than ``max_jump`` face widths restarts the track. Between consecutive frames the 5
    landmarks are compared: a flat photo/screen moved about moves them by one affine map
    (residual ~ 0 relative to the motion); a live face's 3-D shape and expression make the
    motion non-rigid. Detector jitter alone is below ``min_motion``.
    """

    k: int = 5
    _: KW_ONLY
    #: the thresholds are fractions of the inter-ocular distance
    min_motion: float = 0.01
    min_nonrigid: float = 0.004
    min_ratio: float = 0.08
    max_gap_s: float = 0.5
    max_jump: float = 0.5
    _frames: deque[tuple[float, np.ndarray, tuple[float, float, float, float]]] = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        """An empty track of at most K frames."""
        self._frames = deque(maxlen=self.k)

    def reset(self) -> None:
        """Forget the track."""
        self._frames.clear()

    def update(
        self, landmarks: np.ndarray, box: tuple[float, float, float, float], now: float
    ) -> ConsistencyVerdict:
        """Add one observation and return the verdict over the last K frames."""
        lm = np.asarray(landmarks, np.float64).reshape(5, 2)
        if self._frames:
            t0, _, pbox = self._frames[-1]
            pc = np.array([pbox[0] + pbox[2] / 2, pbox[1] + pbox[3] / 2])
            c = np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])
            if (
                now - t0 > self.max_gap_s
                or now < t0
                or np.hypot(*(c - pc)) > self.max_jump * max(pbox[2], 1.0)
            ):
                self._frames.clear()
        self._frames.append((now, lm, box))
        n = len(self._frames)
        if n < self.k:
            return ConsistencyVerdict("pending", n, 0.0, 0.0)
        motions, residuals = [], []
        frames = list(self._frames)
        for (_, a, _), (_, b, _) in itertools.pairwise(frames):
            iod = max(float(np.hypot(*(a[1] - a[0]))), 1e-6)
            motions.append(float(np.sqrt(((b - a) ** 2).sum(axis=1).mean())) / iod)
            residuals.append(affine_residual(a, b) / iod)
        motion = float(np.median(motions))
        nonrigid = float(np.median(residuals))
        if motion < self.min_motion:
            state = "static"
        elif nonrigid < self.min_nonrigid or nonrigid < self.min_ratio * motion:
            state = "rigid"
        else:
            state = "live"
        if not math.isfinite(motion + nonrigid):
            state = "static"
        return ConsistencyVerdict(state, n, motion, nonrigid)
