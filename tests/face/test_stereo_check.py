"""The 3-D check's driver with a perfect fake landmark model: crops, tracking, verdicts."""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from gateway.face.calibration import ideal_pair
from gateway.face.landmarks import DenseLandmarks
from gateway.face.stereo_check import StereoCheck

FIVE = np.array([[300.0, 220], [340, 220], [320, 245], [305, 265], [335, 265]])
BOX = (290.0, 200.0, 60.0, 80.0)
PATTERN = np.random.default_rng(3).uniform(-30, 30, (468, 2))


class PerfectModel:
    """Finds the face wherever the crop is: 60 px further left in the second view."""

    def __init__(self, first: np.ndarray, presence: float = 0.99) -> None:
        self.first = first
        self.presence = presence
        self.crops: list[tuple[float, float, float, float]] = []

    def run(self, frame: np.ndarray, box: Any, five: Any) -> DenseLandmarks:
        self.crops.append(tuple(box))
        centre = np.array([320.0, 240.0]) - (0 if frame is self.first else (60.0, 0.0))
        return DenseLandmarks(centre + PATTERN, self.presence)


def _check(model: PerfectModel) -> StereoCheck:
    return StereoCheck(cast(Any, model), ideal_pair(640, 480, 560.0, 60.0))


def test_the_second_crop_follows_the_face_and_is_tracked() -> None:
    first, second = np.zeros((480, 640, 3), np.uint8), np.zeros((480, 640, 3), np.uint8)
    model = PerfectModel(first)
    check = _check(model)
    v = check.check(first, second, BOX, FIVE)
    # the eye distance (40 px) guesses a 38 px shift; the model finds 60: one more run there
    assert check.second_runs == 2
    assert model.crops[-1][0] == BOX[0] - 60.0
    assert v.relief is not None
    assert v.live is False  # every point at one disparity: flat
    assert abs(v.relief.nose) < 1e-6
    check.check(first, second, BOX, FIVE)
    assert check.second_runs == 3  # the last shift was right: one run
    far = (20.0, 20.0, 60.0, 80.0)
    check.check(first, second, far, FIVE - (280, 180))  # another face: guessed afresh
    assert check.second_runs == 5


def test_the_face_matched_between_the_views_places_the_second_crop_in_one_run() -> None:
    rng = np.random.default_rng(5)
    first = np.zeros((480, 640, 3), np.uint8)
    first[190:290, 280:360] = rng.integers(0, 255, (100, 80, 3), dtype=np.uint8)
    second = np.zeros_like(first)
    second[:, :-60] = first[:, 60:]  # the face 60 px further left, as the model finds it
    model = PerfectModel(first)
    check = _check(model)
    box = (280.0, 190.0, 80.0, 100.0)
    five = np.array([[291.0, 220], [349, 220], [320, 245], [300, 265], [340, 265]])
    check.check(first, second, box, five)
    # the eye distance guesses a 55 px shift; the matched face says 60: no second run needed
    assert check.second_runs == 1
    assert model.crops[-1][0] == box[0] - 60.0
    check = _check(PerfectModel(first))
    check.check(first, np.zeros_like(first), box, five)  # nothing to match: guess, re-run
    assert check.second_runs == 2


def test_no_verdict_without_a_face_or_for_a_small_one() -> None:
    first, second = np.zeros((480, 640, 3), np.uint8), np.zeros((480, 640, 3), np.uint8)
    v = _check(PerfectModel(first, presence=0.1)).check(first, second, BOX, FIVE)
    assert (v.relief, v.live, v.reason) == (None, None, "no_face_first_view")
    small = FIVE * (0.5, 1.0)
    v = _check(PerfectModel(first)).check(first, second, BOX, small)
    assert v.reason == "face_too_small"
