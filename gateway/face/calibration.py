"""A camera pair's stereo calibration: the file format and the projection matrices (pure).

The file is JSON, as written by ``cv2.stereoCalibrate`` results: ``image_size`` [w, h] of
one view, intrinsics ``K1``/``K2`` (3x3), distortion ``D1``/``D2`` (OpenCV order, 4-14
values), the rotation ``R`` (3x3) and translation ``T`` (3, in millimetres) taking points
from the first camera's frame to the second's. Triangulated points are then in millimetres
in the first camera's frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.errors import ConfigError

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class StereoCalibration:
    """Intrinsics, distortion and the pose of the second camera relative to the first."""

    image_size: tuple[int, int]
    k1: Array
    d1: Array
    k2: Array
    d2: Array
    r: Array
    t: Array

    @property
    def p1(self) -> Array:
        """3x4 projection of the first camera: K1 [I | 0]."""
        return np.asarray(self.k1 @ np.hstack([np.eye(3), np.zeros((3, 1))]), np.float64)

    @property
    def p2(self) -> Array:
        """3x4 projection of the second camera: K2 [R | T]."""
        return np.asarray(self.k2 @ np.hstack([self.r, self.t.reshape(3, 1)]), np.float64)

    @property
    def baseline_mm(self) -> float:
        """Distance between the two camera centres."""
        return float(np.linalg.norm(self.t))

    def to_json(self) -> str:
        """The file's text."""
        return json.dumps(
            {
                "image_size": list(self.image_size),
                "K1": self.k1.tolist(),
                "D1": self.d1.tolist(),
                "K2": self.k2.tolist(),
                "D2": self.d2.tolist(),
                "R": self.r.tolist(),
                "T": self.t.tolist(),
            },
            indent=1,
        )


def ideal_pair(width: int, height: int, focal_px: float, baseline_mm: float) -> StereoCalibration:
    """A rectified pair without distortion: the second camera ``baseline_mm`` to the right."""
    k = np.array([[focal_px, 0, width / 2], [0, focal_px, height / 2], [0, 0, 1]], np.float64)
    return StereoCalibration(
        (width, height),
        k,
        np.zeros(5),
        k.copy(),
        np.zeros(5),
        np.eye(3),
        np.array([-baseline_mm, 0.0, 0.0]),
    )


def _matrix(doc: dict[str, Any], key: str, shape: tuple[int, ...]) -> Array:
    try:
        m = np.asarray(doc[key], np.float64)
    except KeyError:
        raise ValueError(f"'{key}' is missing") from None
    except (TypeError, ValueError):
        raise ValueError(f"'{key}' is not a matrix of numbers") from None
    if shape and m.shape != shape:
        raise ValueError(f"'{key}' has shape {m.shape}, expected {shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"'{key}' holds a non-finite number")
    return m


def parse_calibration(text: str) -> StereoCalibration:
    """Parse the file's text; ValueError naming what is wrong."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    size = _matrix(doc, "image_size", (2,))
    d1, d2 = _matrix(doc, "D1", ()).reshape(-1), _matrix(doc, "D2", ()).reshape(-1)
    for name, d in (("D1", d1), ("D2", d2)):
        if d.size not in (4, 5, 8, 12, 14):
            raise ValueError(f"'{name}' has {d.size} values (OpenCV takes 4, 5, 8, 12 or 14)")
    cal = StereoCalibration(
        (int(size[0]), int(size[1])),
        _matrix(doc, "K1", (3, 3)),
        d1,
        _matrix(doc, "K2", (3, 3)),
        d2,
        _matrix(doc, "R", (3, 3)),
        _matrix(doc, "T", (3,)),
    )
    if not np.allclose(cal.r @ cal.r.T, np.eye(3), atol=1e-4):
        raise ValueError("'R' is not a rotation")
    if not 10.0 <= cal.baseline_mm <= 1000.0:
        raise ValueError(f"baseline {cal.baseline_mm:.1f} mm is outside 10..1000 mm")
    return cal


def load_calibration(path: Path) -> StereoCalibration:
    """Read and parse a calibration file; ConfigError naming the file and the problem."""
    try:
        return parse_calibration(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError([("calibration", str(path), str(exc))]) from None


#: how far a calibration's baseline may be from the configured one
BASELINE_TOLERANCE = 0.1


def load_pair_calibration(path: Path, baseline_mm: float) -> StereoCalibration:
    """:func:`load_calibration`, which must agree with the configured baseline within 10 %
    (ConfigError otherwise)."""
    cal = load_calibration(path)
    if abs(cal.baseline_mm - baseline_mm) > BASELINE_TOLERANCE * baseline_mm:
        raise ConfigError(
            [
                (
                    "pair.baseline_mm",
                    str(baseline_mm),
                    f"the calibration {path} says {cal.baseline_mm:.1f} mm",
                )
            ]
        )
    return cal
