"""The 3-D check of one face seen by a calibrated pair: dense landmarks in both views,
undistorted (OpenCV), triangulated and measured by the pure core (:mod:`gateway.face.relief`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from gateway.face.calibration import StereoCalibration, load_pair_calibration
from gateway.face.landmarks import DenseLandmarker, DenseLandmarks
from gateway.face.pair_verdict import TOO_FAR, CheckVerdict, five_points, since_ms
from gateway.face.relief import USED, Relief, ReliefSettings, measure, triangulate
from gateway.face.stereo_pair import predict_second_view

log = logging.getLogger(__name__)

#: the model's face-presence probability needed in each view
MIN_PRESENCE = 0.5
#: re-run the second view once when the face's shift between the views is this far (px)
#: from the guess, so that both crops sit on the face alike (the model's bias then cancels)
RECENTRE_PX = 1.5
#: the normalised correlation needed to take the matched shift over the guess
MATCH_MIN = 0.5
#: no verdict on a face smaller than this (eye distance, px): its depth would be too coarse
MIN_IOD_PX = 40.0


class StereoVerdict(CheckVerdict[Relief]):
    """The relief (None when no verdict: ``reason`` says why) and the check's cost."""

    @property
    def relief(self) -> Relief | None:
        """The measured relief."""
        return self.measured


def _undistort(points: np.ndarray, k: np.ndarray, d: np.ndarray) -> np.ndarray:
    if not np.any(d):
        return points
    import cv2

    out = cv2.undistortPoints(points.reshape(-1, 1, 2).astype(np.float64), k, d, P=k)
    return np.asarray(out, np.float64).reshape(-1, 2)


def _moved(
    box: tuple[float, float, float, float], by: np.ndarray
) -> tuple[float, float, float, float]:
    return (box[0] + float(by[0]), box[1] + float(by[1]), box[2], box[3])


def _std(gray: np.ndarray) -> float:
    """Standard deviation of a grey image (OpenCV: a tenth of numpy's cost on small crops)."""
    import cv2

    return float(cv2.meanStdDev(gray)[1][0, 0])


def _matched_shift(
    first: np.ndarray, second: np.ndarray, box: tuple[float, float, float, float], guess: np.ndarray
) -> np.ndarray:
    """The face's shift between the views, refined from ``guess`` by matching the inner face
    (grey, normalised correlation) within a band around it: the second view's crop then sits
    on the face as the first did without a second model run. ``guess`` when no clear match."""
    import cv2

    x, y, w, h = box
    tx0, ty0 = int(x + 0.2 * w), int(y + 0.2 * h)
    tx1, ty1 = int(x + 0.8 * w), int(y + 0.8 * h)
    mx, my = max(8, int(0.15 * w)), 4
    gx, gy = round(float(guess[0])), round(float(guess[1]))
    sx0, sy0 = tx0 + gx - mx, ty0 + gy - my
    sx1, sy1 = tx1 + gx + mx, ty1 + gy + my
    if min(tx0, ty0, sx0, sy0) < 0 or tx1 > first.shape[1] or ty1 > first.shape[0]:
        return guess
    if sx1 > second.shape[1] or sy1 > second.shape[0] or tx1 - tx0 < 8 or ty1 - ty0 < 8:
        return guess
    tpl = cv2.cvtColor(first[ty0:ty1, tx0:tx1], cv2.COLOR_BGR2GRAY)
    band = cv2.cvtColor(second[sy0:sy1, sx0:sx1], cv2.COLOR_BGR2GRAY)
    if _std(tpl) < 2.0 or _std(band) < 2.0:
        return guess  # nothing to match on
    _, best, _, (bx, by) = cv2.minMaxLoc(cv2.matchTemplate(band, tpl, cv2.TM_CCOEFF_NORMED))
    if not best >= MATCH_MIN:  # also NaN
        return guess
    return np.array([gx - mx + bx, gy - my + by], np.float64)


class StereoCheck:
    """The 3-D check for the pair of one door (one landmarker: use from one thread)."""

    def __init__(
        self,
        landmarker: DenseLandmarker,
        calibration: StereoCalibration,
        settings: ReliefSettings | None = None,
    ) -> None:
        """Bind a landmark model to a pair's calibration."""
        self.landmarker = landmarker
        self.cal = calibration
        self.settings = settings or ReliefSettings()
        #: the last face's box and measured shift between the views: the next frame's guess
        self._last: tuple[tuple[float, float, float, float], np.ndarray] | None = None
        self.second_runs = 0

    @classmethod
    def load(
        cls, model_dir: Path, calibration: Path, baseline_mm: float, threads: int = 1
    ) -> StereoCheck:
        """The model from ``model_dir`` and the calibration file, which must agree with the
        configured baseline within 10 % (ConfigError otherwise)."""
        return cls(
            DenseLandmarker.load(model_dir, threads),
            load_pair_calibration(calibration, baseline_mm),
        )

    def _second(
        self,
        first_view: np.ndarray,
        second: np.ndarray,
        box: tuple[float, float, float, float],
        five: np.ndarray,
        first: DenseLandmarks,
    ) -> DenseLandmarks:
        """The second view's landmarks from a crop placed on the face as the first one was:
        the first crop moved by the face's shift between the views (guessed, then measured)."""
        guess = self._tracked(box)
        if guess is None:
            _, five2 = predict_second_view(self.cal, box, five)
            guess = np.median(five2 - five, axis=0)
        guess = _matched_shift(first_view, second, box, guess)
        lm = self.landmarker.run(second, _moved(box, guess), five + guess)
        self.second_runs += 1
        shift = np.median(lm.points - first.points, axis=0)
        if float(np.hypot(*(shift - guess))) > RECENTRE_PX:
            lm = self.landmarker.run(second, _moved(box, shift), five + shift)
            self.second_runs += 1
            shift = np.median(lm.points - first.points, axis=0)
        self._last = (box, shift)
        return lm

    def _tracked(self, box: tuple[float, float, float, float]) -> np.ndarray | None:
        """The last frame's shift, scaled with the face's size, when it is the same face."""
        if self._last is None:
            return None
        (x, y, w, h), shift = self._last
        dx = abs(box[0] + box[2] / 2 - x - w / 2)
        dy = abs(box[1] + box[3] / 2 - y - h / 2)
        if dx > w / 2 or dy > h / 2:
            return None
        return np.asarray(shift * (box[2] / w), np.float64)

    def check(
        self,
        first: np.ndarray,
        second: np.ndarray,
        box: tuple[float, float, float, float],
        five: np.ndarray,
    ) -> StereoVerdict:
        """The relief of the face at ``box`` (5 detector landmarks ``five``) of ``first``."""
        t0 = time.perf_counter()
        five, iod = five_points(five)
        if iod < MIN_IOD_PX:
            return StereoVerdict(None, TOO_FAR, since_ms(t0))
        lm1 = self.landmarker.run(first, box, five)
        if lm1.presence < MIN_PRESENCE:
            return StereoVerdict(None, "no_face_first_view", since_ms(t0))
        lm2 = self._second(first, second, box, five, lm1)
        if lm2.presence < MIN_PRESENCE:
            return StereoVerdict(None, "no_face_second_view", since_ms(t0))
        # only the landmarks the relief reads are triangulated (the rest stay NaN)
        x1 = _undistort(lm1.points[USED], self.cal.k1, self.cal.d1)
        x2 = _undistort(lm2.points[USED], self.cal.k2, self.cal.d2)
        pts = np.full((len(lm1.points), 3), np.nan)
        pts[USED] = triangulate(self.cal.p1, self.cal.p2, x1, x2)
        relief = measure(pts, self.settings)
        return StereoVerdict(relief, relief.reason, since_ms(t0))
