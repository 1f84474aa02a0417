"""The near-infrared check of one face seen by an ``rgb+nir`` pair: the face's place in the
NIR view from the pair's calibration, both crops sampled, measured by the pure core
(:mod:`gateway.face.nir`). No model runs: the colour view's detector landmarks suffice.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from gateway.face.calibration import StereoCalibration, load_pair_calibration
from gateway.face.nir import NirResponse, NirSettings, inner_face, measure, sample
from gateway.face.pair_verdict import TOO_FAR, CheckVerdict, five_points, since_ms
from gateway.face.stereo_pair import MEAN_IOD_MM, predict_second_view

#: no verdict on a face smaller than this (eye distance, px)
MIN_IOD_PX = 30.0


class NirVerdict(CheckVerdict[NirResponse]):
    """The NIR response (None when no verdict: ``reason`` says why) and the check's cost."""

    @property
    def response(self) -> NirResponse | None:
        """The measured response."""
        return self.measured


def _gray(samples: np.ndarray) -> np.ndarray:
    """Luma of sampled pixels (BGR, ITU-R BT.601); a NIR camera's 3 equal channels give
    the same value; grey samples as they are."""
    if samples.ndim == 2:
        return samples
    return np.asarray(samples[..., :3] @ np.array([0.114, 0.587, 0.299]), np.float64)


class NirCheck:
    """The NIR check for the pair of one door."""

    def __init__(self, calibration: StereoCalibration, settings: NirSettings | None = None):
        """Bind to a pair's calibration (registration of the NIR view to the colour one)."""
        self.cal = calibration
        self.settings = settings or NirSettings()

    @classmethod
    def load(cls, calibration: Path, baseline_mm: float) -> NirCheck:
        """The calibration file, which must agree with the configured baseline within 10 %."""
        return cls(load_pair_calibration(calibration, baseline_mm))

    def check(
        self,
        first: np.ndarray,
        second: np.ndarray,
        box: tuple[float, float, float, float],
        five: np.ndarray,
    ) -> NirVerdict:
        """The NIR response of the face at ``box`` (5 landmarks ``five``) of the colour view
        ``first``, looked for in the NIR view ``second``."""
        t0 = time.perf_counter()
        five, iod = five_points(five)
        if iod < MIN_IOD_PX:
            return NirVerdict(None, TOO_FAR, since_ms(t0))
        _, five2 = predict_second_view(self.cal, box, five)
        vis = _gray(sample(first, inner_face(five)))
        nir = _gray(sample(second, inner_face(five2)))
        depth = float(self.cal.k1[0, 0]) * MEAN_IOD_MM / iod
        response = measure(nir, vis, depth, self.settings)
        ms = since_ms(t0)
        if response is None:
            return NirVerdict(None, "nir_saturated", ms)
        return NirVerdict(response, response.reason, ms)
