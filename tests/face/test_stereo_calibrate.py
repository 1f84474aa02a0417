"""Stereo calibration with a ChArUco board, on images rendered through a known pair."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.face.calibration import parse_calibration
from gateway.face.stereo_calibrate import BoardSpec, CalibrationError, calibrate_pair

cv2 = pytest.importorskip("cv2")

PX_PER_MM = 4.0
K = np.array([[560.0, 0, 320], [0, 560.0, 240], [0, 0, 1]])
R_TRUE, _ = cv2.Rodrigues(np.array([0.0, 0.03, 0.0]))
T_TRUE = np.array([-60.0, 0.5, 1.0])


def _view(board_img: np.ndarray, k: np.ndarray, rot: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The board (its image's pixels -> mm) seen by a camera with pose (rot, t)."""
    to_mm = np.diag([1 / PX_PER_MM, 1 / PX_PER_MM, 1.0])
    h = k @ np.column_stack([rot[:, 0], rot[:, 1], t]) @ to_mm
    return cv2.warpPerspective(board_img, h, (640, 480), borderValue=200)


def _pairs(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    spec = BoardSpec()
    w = int(spec.squares[0] * spec.square_mm * PX_PER_MM)
    h = int(spec.squares[1] * spec.square_mm * PX_PER_MM)
    board_img = spec.board().generateImage((w, h))
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        rot, _ = cv2.Rodrigues(rng.uniform(-0.6, 0.6, 3))
        t = np.array([rng.uniform(-160, -80), rng.uniform(-120, -60), rng.uniform(550, 750)])
        img1 = _view(board_img, K, rot, t)
        img2 = _view(board_img, K, R_TRUE @ rot, R_TRUE @ t + T_TRUE)
        out.append((cv2.cvtColor(img1, cv2.COLOR_GRAY2BGR), cv2.cvtColor(img2, cv2.COLOR_GRAY2BGR)))
    return out


def test_a_known_pair_is_recovered() -> None:
    result = calibrate_pair(_pairs(16))
    cal = result.calibration
    assert result.pairs_used >= 12
    assert result.rms_px < 1.0
    assert cal.baseline_mm == pytest.approx(np.linalg.norm(T_TRUE), rel=0.03)
    np.testing.assert_allclose(cal.r, R_TRUE, atol=0.02)
    assert cal.k1[0, 0] == pytest.approx(560.0, rel=0.03)
    back = parse_calibration(cal.to_json())  # the file the door's pair.calibration names
    np.testing.assert_allclose(back.p2, cal.p2)


def test_too_few_views_of_the_board_are_refused() -> None:
    blank = np.full((480, 640, 3), 200, np.uint8)
    with pytest.raises(CalibrationError, match="0 of 4 image pairs"):
        calibrate_pair([(blank, blank)] * 4)
    with pytest.raises(CalibrationError, match="differ in size"):
        calibrate_pair([(blank, blank[:, :320])])


def test_cli_writes_the_calibration_from_side_by_side_images(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from gateway.cli import camera
    from gateway.face.calibration import load_calibration

    folder = tmp_path / "shots"
    folder.mkdir()
    for i, (a, b) in enumerate(_pairs(16)):
        cv2.imwrite(str(folder / f"{i:02}.png"), np.hstack([a, b]))
    parser = argparse.ArgumentParser()
    camera.register(parser.add_subparsers())
    out = tmp_path / "pair.json"
    args = parser.parse_args(["camera", "calibrate", "--images", str(folder), "--out", str(out)])
    assert args.func(args) == 0
    assert "baseline 60.0 mm" in capsys.readouterr().out
    assert load_calibration(out).baseline_mm == pytest.approx(60.0, rel=0.03)
    args = parser.parse_args(
        [
            "camera",
            "calibrate",
            "--images",
            str(tmp_path / "none"),
            "--layout",
            "two_streams",
            "--out",
            str(out),
        ]
    )
    assert args.func(args) == 1
    assert "no image pairs" in capsys.readouterr().out
    args = parser.parse_args(["camera", "board", "--out", str(tmp_path / "board.png")])
    assert args.func(args) == 0
    assert cv2.imread(str(tmp_path / "board.png")).shape[:2] == (2000, 2800)
