"""Frames of a pair: matched within one frame, split side by side, the face found again."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.face.calibration import ideal_pair
from gateway.face.stereo_pair import frames_match, predict_second_view, split_side_by_side


def test_frames_more_than_one_frame_apart_are_not_a_pair() -> None:
    assert frames_match(10.0, 10.1, fps=10)
    assert frames_match(10.05, 10.0, fps=10)
    assert not frames_match(10.0, 10.101, fps=10)
    assert not frames_match(10.2, 10.0, fps=10)


def test_side_by_side_halves() -> None:
    frame = np.zeros((4, 6, 3), np.uint8)
    frame[:, 3:] = 7
    first, second = split_side_by_side(frame)
    assert first.shape == second.shape == (4, 3, 3)
    assert not first.any()
    assert (second == 7).all()
    with pytest.raises(ValueError, match="even width"):
        split_side_by_side(np.zeros((4, 5, 3), np.uint8))


def test_the_face_moves_left_by_its_disparity() -> None:
    cal = ideal_pair(640, 480, 560.0, 60.0)
    five = np.array([[300.0, 200], [363, 200], [331, 240], [310, 270], [352, 270]])
    box, pts = predict_second_view(cal, (280.0, 170.0, 100.0, 130.0), five)
    # eyes 63 px apart: the face is 560 mm away, so it moves 560 * 60 / 560 = 60 px left
    np.testing.assert_allclose(pts, five - (60.0, 0.0), atol=1e-6)
    assert box == pytest.approx((220.0, 170.0, 100.0, 130.0))
