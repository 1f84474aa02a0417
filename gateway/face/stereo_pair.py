"""Frames of a camera pair (pure: numpy only): matching, splitting, where the face is.

- Two streams: frames are a pair only when their capture times are at most one frame period
  apart (``1 / fps``); a pair further apart is not used (the 3-D check gives no verdict).
- A side-by-side frame (USB stereo cameras) holds the first view in its left half.
- The face's place in the second view is predicted from the first: the face's distance is
  estimated from its eye distance in pixels (adult mean ~63 mm), the 5 landmarks are lifted
  to that depth and projected into the second camera.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.face.calibration import StereoCalibration

Array = npt.NDArray[np.float64]

MEAN_IOD_MM = 63.0


def frames_match(first_ts: float, second_ts: float, fps: float) -> bool:
    """Whether two capture times (seconds, one clock) are at most one frame apart."""
    return abs(first_ts - second_ts) <= 1.0 / fps


def split_side_by_side(frame: npt.NDArray[np.uint8]) -> tuple[np.ndarray, np.ndarray]:
    """(first view, second view): the left and right halves of a side-by-side frame."""
    w = frame.shape[1]
    if w % 2:
        raise ValueError(f"a side-by-side frame needs an even width, not {w}")
    return frame[:, : w // 2], frame[:, w // 2 :]


def predict_second_view(
    cal: StereoCalibration,
    box: tuple[float, float, float, float],
    five: Array,
) -> tuple[tuple[float, float, float, float], Array]:
    """(box, 5 landmarks) where the face of the first view should appear in the second."""
    pts = np.asarray(five, np.float64).reshape(5, 2)
    iod_px = float(np.linalg.norm(pts[1] - pts[0]))
    focal = float(cal.k1[0, 0])
    depth = focal * MEAN_IOD_MM / max(iod_px, 1.0)
    x, y, w, h = box
    corners = np.array([[x, y], [x + w, y + h]], np.float64)
    both = np.vstack([pts, corners])
    rays = np.linalg.solve(cal.k1, np.hstack([both, np.ones((len(both), 1))]).T).T
    world = rays / rays[:, 2:3] * depth
    hom = np.hstack([world, np.ones((len(world), 1))]) @ cal.p2.T
    proj = hom[:, :2] / hom[:, 2:3]
    (x0, y0), (x1, y1) = proj[5], proj[6]
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0)), proj[:5]
