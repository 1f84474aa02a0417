"""Stereo calibration of a camera pair with a ChArUco board (OpenCV).

Each image pair shows the printed board to both cameras at once (in different places and
tilts: 10-20 pairs). The ChArUco corners are found in each view (``cv2.aruco``), the corners
seen in both are matched by id, each camera is calibrated alone (``calibrateCamera``), then
the pair (``stereoCalibrate`` with the intrinsics fixed) gives R and T in the board's units
(millimetres). The result is the JSON file the door's ``pair.calibration`` names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gateway.errors import GatewayError
from gateway.face.calibration import StereoCalibration

log = logging.getLogger(__name__)

MIN_CORNERS = 6
MIN_PAIRS = 3


class CalibrationError(GatewayError):
    """The images do not allow a calibration (the message says why)."""


@dataclass(frozen=True)
class BoardSpec:
    """The printed ChArUco board: squares across and down, sizes in mm, the marker set."""

    squares: tuple[int, int] = (7, 5)
    square_mm: float = 40.0
    marker_mm: float = 30.0
    dictionary: str = "DICT_5X5_100"

    def board(self) -> Any:
        """The ``cv2.aruco.CharucoBoard``."""
        import cv2

        if not 0 < self.marker_mm < self.square_mm:
            raise CalibrationError("the marker must be smaller than the square")
        d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        return cv2.aruco.CharucoBoard(self.squares, self.square_mm, self.marker_mm, d)


@dataclass(frozen=True)
class CalibrationResult:
    """The calibration, its stereo reprojection error (px) and how many pairs were used."""

    calibration: StereoCalibration
    rms_px: float
    pairs_used: int
    pairs_given: int


def _corners(detector: Any, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    corners, ids, _, _ = detector.detectBoard(image)
    if corners is None or ids is None:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int32)
    return corners.reshape(-1, 2).astype(np.float32), ids.reshape(-1).astype(np.int32)


@dataclass(frozen=True)
class BoardSighting:
    """What one view pair shows of the board: corners found in each view and in both."""

    first: int
    second: int
    common: int

    @property
    def usable(self) -> bool:
        """Whether the pair can serve the calibration (enough corners seen by both)."""
        return self.common >= MIN_CORNERS


class BoardFinder:
    """Finds the ChArUco board in view pairs (per-view feedback while capturing)."""

    def __init__(self, spec: BoardSpec | None = None) -> None:
        """One detector for the board ``spec``."""
        import cv2

        self._detector = cv2.aruco.CharucoDetector((spec or BoardSpec()).board())

    def sight(self, first: np.ndarray, second: np.ndarray) -> BoardSighting:
        """The corners found in each view and seen by both."""
        _, ia = _corners(self._detector, first)
        _, ib = _corners(self._detector, second)
        return BoardSighting(len(ia), len(ib), len(np.intersect1d(ia, ib)))


def calibrate_pair(
    pairs: list[tuple[np.ndarray, np.ndarray]], spec: BoardSpec | None = None
) -> CalibrationResult:
    """Calibrate a pair from image pairs (first view, second view) of a ChArUco board."""
    import cv2

    board = (spec or BoardSpec()).board()
    detector = cv2.aruco.CharucoDetector(board)
    grid = board.getChessboardCorners().astype(np.float32)
    objects, first, second = [], [], []
    size: tuple[int, int] | None = None
    for a, b in pairs:
        if a.shape != b.shape:
            raise CalibrationError(f"the two views differ in size: {a.shape} and {b.shape}")
        size = size or (a.shape[1], a.shape[0])
        if (a.shape[1], a.shape[0]) != size:
            raise CalibrationError("every image must have the same size")
        ca, ia = _corners(detector, a)
        cb, ib = _corners(detector, b)
        common = np.intersect1d(ia, ib)
        if len(common) < MIN_CORNERS:
            continue
        objects.append(grid[common])
        first.append(ca[[int(np.flatnonzero(ia == i)[0]) for i in common]])
        second.append(cb[[int(np.flatnonzero(ib == i)[0]) for i in common]])
    if size is None or len(objects) < MIN_PAIRS:
        raise CalibrationError(
            f"the board was seen by both cameras in {len(objects)} of {len(pairs)} image pairs "
            f"(at least {MIN_PAIRS} needed, each with {MIN_CORNERS}+ corners in both views)"
        )
    # k3 fixed at 0: with the 10-20 views a site takes it only overfits (OpenCV's advice)
    flags = cv2.CALIB_FIX_K3
    _, k1, d1, _, _ = cv2.calibrateCamera(objects, first, size, None, None, flags=flags)
    _, k2, d2, _, _ = cv2.calibrateCamera(objects, second, size, None, None, flags=flags)
    rms, k1, d1, k2, d2, r, t, _, _ = cv2.stereoCalibrate(
        objects, first, second, k1, d1, k2, d2, size, flags=cv2.CALIB_FIX_INTRINSIC
    )
    cal = StereoCalibration(
        size,
        np.asarray(k1, np.float64),
        np.asarray(d1, np.float64).reshape(-1),
        np.asarray(k2, np.float64),
        np.asarray(d2, np.float64).reshape(-1),
        np.asarray(r, np.float64),
        np.asarray(t, np.float64).reshape(3),
    )
    log.info("calibration: rms %.3f px from %d of %d pairs", rms, len(objects), len(pairs))
    return CalibrationResult(cal, float(rms), len(objects), len(pairs))


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _read(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise CalibrationError(f"{path} is not a readable image")
    return np.asarray(img, np.uint8)


def load_pairs(folder: Path, layout: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Image pairs from ``folder``: side-by-side frames, or ``first/`` and ``second/``
    sub-folders holding the two views under the same file names."""
    from gateway.face.stereo_pair import split_side_by_side

    if layout == "side_by_side":
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        pairs = []
        for f in files:
            try:
                a, b = split_side_by_side(_read(f))
            except ValueError as exc:
                raise CalibrationError(f"{f}: {exc}") from None
            pairs.append((np.ascontiguousarray(a), np.ascontiguousarray(b)))
    else:
        first, second = folder / "first", folder / "second"
        names = (
            sorted(p.name for p in first.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if first.is_dir()
            else []
        )
        missing = [n for n in names if not (second / n).is_file()]
        if missing:
            raise CalibrationError(f"{second} lacks {', '.join(missing[:3])}")
        pairs = [(_read(first / n), _read(second / n)) for n in names]
    if not pairs:
        raise CalibrationError(f"no image pairs in {folder} (layout {layout})")
    return pairs
