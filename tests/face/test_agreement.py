"""Detection, alignment and embeddings agree with OpenCV's FaceDetectorYN / FaceRecognizerSF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.face import models
from gateway.face.align import align
from gateway.face.detector import OpenCVYuNet, OrtYuNet
from gateway.face.embedder import OpenCVSFace, OrtSFace, l2_normalise
from gateway.face.image import load_image
from gateway.face.pipeline import iou
from gateway.face.settings import FaceSettings
from tests.face.conftest import FACES

pytestmark = pytest.mark.models


def _yunet(model_dir: Path, **settings: Any) -> OrtYuNet:
    return OrtYuNet(model_dir / models.YUNET, FaceSettings(threads=1, **settings))


def check_agreement(model_dir: Path, img: np.ndarray) -> int:
    import cv2

    ref_det = cv2.FaceDetectorYN.create(str(model_dir / models.YUNET), "", (320, 320), 0.7, 0.3, 50)
    ref_det.setInputSize((img.shape[1], img.shape[0]))
    _, faces = ref_det.detect(img)
    ref = [] if faces is None else sorted(faces.tolist(), key=lambda f: f[0])
    mine = sorted(
        _yunet(model_dir, detector_input=None).detect(img),
        key=lambda d: d.box[0],
    )
    assert len(mine) == len(ref)
    rec = cv2.FaceRecognizerSF.create(str(model_dir / models.SFACE), "")
    emb = OrtSFace(model_dir / models.SFACE, threads=1)
    for f, d in zip(ref, mine, strict=True):
        assert iou(tuple(f[:4]), d.box) >= 0.95
        assert np.abs(np.array(f[4:14]).reshape(5, 2) - d.landmarks).max() <= 2.0
        assert abs(f[14] - d.score) < 0.01
        ref_crop = rec.alignCrop(img, np.array(f, np.float32))
        crop = align(img, d.landmarks)
        assert np.abs(ref_crop.astype(np.int16) - crop).mean() < 2.0
        ref_feat = l2_normalise(np.asarray(rec.feature(ref_crop)).reshape(1, -1))[0]
        assert float(ref_feat @ emb.embed([ref_crop])[0]) >= 0.99
        assert float(ref_feat @ emb.embed([crop])[0]) >= 0.99
    return len(mine)


def test_astronaut_agrees_with_opencv(model_dir: Path, astronaut: np.ndarray) -> None:
    assert check_agreement(model_dir, astronaut) == 1


@pytest.mark.shared
@pytest.mark.parametrize(
    "name",
    [
        "spoof/image_T1.jpg",
        "group/t1.jpg",
        "face-recognition-tests/obama.jpg",
        "face-recognition-tests/biden.jpg",
        "lfw-dev/pairsDevTrain.txt",  # placeholder replaced below by one LFW image
    ],
)
def test_shared_images_agree_with_opencv(model_dir: Path, name: str) -> None:
    path = FACES / name
    if path.suffix == ".txt":
        path = next((FACES / "lfw-dev" / "images").glob("*/*_0001.jpg"))
    n = check_agreement(model_dir, load_image(path))
    assert n >= 1
    if name == "group/t1.jpg":
        assert n == 6


def test_letterboxed_input_finds_the_same_face(model_dir: Path, astronaut: np.ndarray) -> None:
    full = _yunet(model_dir, detector_input=None).detect(astronaut)
    for size in ((320, 320), (640, 480), (160, 160)):
        small = _yunet(model_dir, detector_input=size).detect(astronaut)
        assert len(small) == 1
        assert iou(small[0].box, full[0].box) > 0.75
    stretched = _yunet(model_dir, detector_input=(640, 480), letterbox=False).detect(astronaut)
    assert len(stretched) == 1
    assert iou(stretched[0].box, full[0].box) > 0.8


def test_opencv_backend_matches_onnxruntime(model_dir: Path, astronaut: np.ndarray) -> None:
    a = _yunet(model_dir).detect(astronaut)
    b = OpenCVYuNet(model_dir / models.YUNET, FaceSettings()).detect(astronaut)
    assert len(a) == len(b) == 1
    assert iou(a[0].box, b[0].box) > 0.99
    crop = align(astronaut, a[0].landmarks)
    ea = OrtSFace(model_dir / models.SFACE, threads=1).embed([crop])
    eb = OpenCVSFace(model_dir / models.SFACE).embed([crop])
    assert float(ea[0] @ eb[0]) > 0.999


def test_embeddings_batched_flip_and_normalised(model_dir: Path, astronaut: np.ndarray) -> None:
    det = _yunet(model_dir).detect(astronaut)[0]
    crop = align(astronaut, det.landmarks)
    other = np.ascontiguousarray(crop[:, ::-1])
    emb = OrtSFace(model_dir / models.SFACE, threads=1)
    batch = emb.embed([crop, other, crop])
    assert batch.shape == (3, 128)
    assert batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batch[0], emb.embed([crop])[0], atol=1e-5)
    np.testing.assert_allclose(batch[0], batch[2], atol=1e-6)
    fused = OrtSFace(model_dir / models.SFACE, flip_fusion=True, threads=1).embed([crop, other])
    want = l2_normalise((batch[0] + batch[1])[None])[0]
    np.testing.assert_allclose(fused[0], want, atol=1e-5)
    np.testing.assert_allclose(fused[0], fused[1], atol=1e-5)  # mirror pair fuses the same
    assert emb.embed([]).shape == (0, 128)
    with pytest.raises(ValueError, match="112x112"):
        emb.embed([np.zeros((100, 100, 3), np.uint8)])
