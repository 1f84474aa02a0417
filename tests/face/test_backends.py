"""Per-stage backends (``auto``), the detector's padding, liveness for the gate's face only,
and OpenCV-backed models shared by several camera threads."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.errors import GatewayError
from gateway.face.detector import prepare
from gateway.face.pipeline import FacePipeline, FaceSettings
from gateway.face.settings import AUTO_BACKEND


def test_auto_backend_picks_each_stage_and_an_override_wins() -> None:
    s = FaceSettings()
    assert s.backend == "auto"
    assert {k: s.backend_for(k) for k in AUTO_BACKEND} == {  # type: ignore[arg-type]
        "detector": "onnxruntime",
        "embedder": "opencv",
        "liveness": "opencv",
    }
    assert FaceSettings(embedder_backend="onnxruntime").backend_for("embedder") == "onnxruntime"
    assert FaceSettings(backend="onnxruntime").backend_for("liveness") == "onnxruntime"
    with pytest.raises(GatewayError, match="onnxruntime or opencv"):
        FaceSettings(embedder_backend="auto")  # type: ignore[arg-type]


def test_letterbox_pads_only_to_the_content() -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    img, sx, sy = prepare(frame, (320, 320), letterbox=True)
    assert img.shape[:2] == (256, 320)  # 320x240 content, padded to a multiple of 32
    assert sx == sy == pytest.approx(0.5)
    img, _, _ = prepare(frame, (320, 320), letterbox=False)
    assert img.shape[:2] == (320, 320)  # stretched: the whole input


def test_auto_pipeline_matches_onnxruntime(model_dir: Path, astronaut: np.ndarray) -> None:
    auto = FacePipeline.load(model_dir, FaceSettings(threads=1))
    ort = FacePipeline.load(model_dir, FaceSettings(threads=1, backend="onnxruntime"))
    a, b = auto.analyze(astronaut), ort.analyze(astronaut)
    assert len(a) == len(b) == 1
    assert a[0].embedding is not None
    assert b[0].embedding is not None
    assert float(a[0].embedding @ b[0].embedding) > 0.999
    assert a[0].box == pytest.approx(b[0].box)
    if auto.has_liveness:
        assert a[0].liveness == pytest.approx(b[0].liveness, abs=0.02)


def test_liveness_only_for_the_largest_good_face(model_dir: Path, astronaut: np.ndarray) -> None:
    pipe = FacePipeline.load(model_dir, FaceSettings(threads=1))
    if not pipe.has_liveness:
        pytest.skip("needs the anti-spoofing models from ../shared/models/antispoof")
    face = astronaut[0:260, 120:380]
    frame = np.full((480, 900, 3), 110, np.uint8)
    frame[40:440, 20:420] = cv2.resize(face, (400, 400))
    frame[150:370, 560:780] = cv2.resize(face, (220, 220))
    obs = pipe.analyze(frame)
    good = [o for o in obs if o.quality.ok]
    assert len(good) == 2, [o.quality.reason for o in obs]
    big, small = sorted(good, key=lambda o: -o.box[2] * o.box[3])
    assert big.liveness is not None
    assert small.liveness is None
    assert small.embedding is not None, "every good face is still embedded and matched"


def test_opencv_models_are_safe_from_several_threads(
    model_dir: Path, astronaut: np.ndarray
) -> None:
    pipe = FacePipeline.load(model_dir, FaceSettings(threads=1, backend="opencv"))
    want = pipe.analyze(astronaut)[0]
    assert want.embedding is not None
    got: list[np.ndarray] = []
    lives: list[float | None] = []

    def run() -> None:
        for _ in range(4):
            o = pipe.analyze(astronaut)[0]
            assert o.embedding is not None
            got.append(o.embedding)
            lives.append(o.liveness)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 12
    assert all(np.allclose(e, want.embedding, atol=1e-5) for e in got)
    assert all(v == want.liveness or abs(v - want.liveness) < 1e-5 for v in lives if v is not None)
