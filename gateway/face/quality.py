"""Quality gate: eye distance, frontal pose from landmarks, blur, exposure."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gateway.face.settings import QualityThresholds


@dataclass(frozen=True)
class QualityVerdict:
    """Outcome of the gate; ``reason`` is the first failed check, values are the measures.

    ``reason`` is one of too_small, not_frontal, blurred, underexposed, overexposed.
    ``score`` is a 0..1 summary (1 = comfortably inside every limit) for ranking samples.
    """

    ok: bool
    reason: str | None
    interocular_px: float
    yaw: float
    roll_deg: float
    pitch: float
    sharpness: float
    brightness: float
    score: float


def pose(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """(inter-ocular px, yaw ratio, roll degrees, pitch ratio) from the 5 landmarks.

    yaw = nose offset from the eye/mouth midline along the eye axis / eye distance (0 frontal);
    pitch = nose height between the eye line (0) and the mouth line (1), ~0.5 frontal.
    """
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    eye_r, eye_l, nose, mouth_r, mouth_l = lm
    axis = eye_l - eye_r
    iod = float(np.hypot(*axis))
    if iod < 1e-6:
        return 0.0, 1.0, 0.0, 0.5
    roll = math.degrees(math.atan2(axis[1], axis[0]))
    ux = axis / iod
    uy = np.array([-ux[1], ux[0]])
    eyes = (eye_r + eye_l) / 2
    mouth = (mouth_r + mouth_l) / 2
    mid = (eyes + mouth) / 2
    yaw = float((nose - mid) @ ux / iod)
    span = float((mouth - eyes) @ uy)
    pitch = float((nose - eyes) @ uy / span) if span > 1e-6 else 0.0
    return iod, yaw, roll, pitch


def sharpness_and_brightness(aligned_bgr: np.ndarray) -> tuple[float, float]:
    """(variance of the Laplacian, mean grey level) of the central face region of a crop."""
    import cv2

    grey = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY)
    centre = grey[24:104, 16:96]
    lap = cv2.Laplacian(centre, cv2.CV_64F)
    return float(lap.var()), float(centre.mean())


def assess(
    landmarks: np.ndarray,
    aligned_bgr: np.ndarray,
    t: QualityThresholds,
    *,
    tracked: bool = False,
) -> QualityVerdict:
    """Apply the gate to one face (landmarks in frame pixels, its 112x112 aligned crop).

    ``tracked``: the same face passed the gate in the previous frame, so the size limit is
    ``min_interocular_px * tracked_size_ratio`` (every other check is unchanged).
    """
    iod, yaw, roll, pitch = pose(landmarks)
    sharp, bright = sharpness_and_brightness(aligned_bgr)
    lo, hi = t.pitch_range
    reason: str | None = None
    min_iod = t.min_interocular_px * (t.tracked_size_ratio if tracked else 1.0)
    if iod < min_iod:
        reason = "too_small"
    elif abs(yaw) > t.max_yaw or abs(roll) > t.max_roll_deg or not lo <= pitch <= hi:
        reason = "not_frontal"
    elif bright < t.min_brightness:
        reason = "underexposed"
    elif bright > t.max_brightness:
        reason = "overexposed"
    elif sharp < t.min_sharpness:
        reason = "blurred"
    margins = [
        min(1.0, iod / (2 * t.min_interocular_px)),
        max(0.0, 1 - abs(yaw) / t.max_yaw),
        min(1.0, sharp / (4 * t.min_sharpness)) if t.min_sharpness > 0 else 1.0,
    ]
    return QualityVerdict(
        ok=reason is None,
        reason=reason,
        interocular_px=iod,
        yaw=yaw,
        roll_deg=roll,
        pitch=pitch,
        sharpness=sharp,
        brightness=bright,
        score=float(np.clip(min(margins), 0.0, 1.0)) if reason is None else 0.0,
    )
