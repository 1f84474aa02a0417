"""FacePipeline end to end: observations, enrolment verdicts, bad input, liveness, worker."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.access.decision import LivenessPolicy
from gateway.errors import GatewayError, ModelError
from gateway.face import models
from gateway.face.image import ImageError, as_bgr, load_image
from gateway.face.pipeline import FacePipeline, FaceSettings
from gateway.face.worker import FaceWorker
from tests.face.conftest import FACES

pytestmark = pytest.mark.models


def test_analyze_astronaut(pipeline: FacePipeline, astronaut: np.ndarray) -> None:
    obs = pipeline.analyze(astronaut)
    assert len(obs) == 1
    o = obs[0]
    x, y, w, _ = o.box
    assert 150 < x < 210
    assert 40 < y < 90
    assert 70 < w < 110
    assert o.landmarks.shape == (5, 2)
    assert o.det_score > 0.8
    assert o.quality.ok, o.quality
    assert o.embedding is not None
    assert o.embedding.shape == (128,)
    assert np.linalg.norm(o.embedding) == pytest.approx(1.0, abs=1e-5)
    assert (o.liveness is None) == (not pipeline.has_liveness)
    assert pipeline.stats.detect_ms > 0
    assert pipeline.analyze(astronaut, liveness=False)[0].liveness is None
    sample = pipeline.embed_image(astronaut)
    assert sample.ok
    assert sample.verdict == "ok"
    assert sample.embedding is not None
    assert float(sample.embedding @ o.embedding) > 0.999


def test_no_face_several_faces_tiny_blurred(pipeline: FacePipeline, astronaut: np.ndarray) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    assert pipeline.analyze(noise) == []
    assert pipeline.embed_image(noise).verdict == "no_face"
    two = np.hstack([astronaut, astronaut[:, ::-1]])
    obs = pipeline.analyze(two)
    assert len(obs) == 2
    s = pipeline.embed_image(two)
    assert s.verdict == "several_faces"
    assert s.embedding is None
    assert s.faces == 2
    # tiny: the face is found at full resolution but its eyes are too close together
    tiny = cv2.resize(astronaut, (160, 160))
    small = FacePipeline(
        pipeline.detector, pipeline.embedder, None, FaceSettings(detector_input=None)
    )
    t_obs = small.analyze(tiny)
    assert len(t_obs) == 1
    assert t_obs[0].quality.reason == "too_small"
    assert t_obs[0].embedding is None
    t_s = small.embed_image(tiny)
    assert t_s.verdict == "low_quality"
    assert t_s.reason == "too_small"
    # size hysteresis: the same face, accepted in the previous frame, passes down to 85 %
    iod = t_obs[0].quality.interocular_px
    near = FacePipeline(
        pipeline.detector,
        pipeline.embedder,
        None,
        FaceSettings(detector_input=None, min_interocular_px=iod / 0.9),
    )
    assert near.analyze(tiny)[0].quality.reason == "too_small"
    kept = near.analyze(tiny, tracked=[t_obs[0].box])[0]
    assert kept.quality.ok
    assert kept.embedding is not None
    x, y, w, h = t_obs[0].box
    elsewhere = (x + 3 * w, y, w, h)  # another place in the frame: not the same face
    assert near.analyze(tiny, tracked=[elsewhere])[0].quality.reason == "too_small"
    blurred = cv2.GaussianBlur(astronaut, (0, 0), 3)
    b_obs = pipeline.analyze(blurred)
    assert len(b_obs) == 1
    assert b_obs[0].quality.reason == "blurred"
    assert b_obs[0].embedding is None
    assert b_obs[0].liveness is None
    dark = (astronaut // 10).astype(np.uint8)
    d_obs = pipeline.analyze(dark)
    assert [o.quality.reason for o in d_obs] == ["underexposed"]
    assert d_obs[0].embedding is None
    assert pipeline.embed_image(dark).reason == "underexposed"


def test_grey_and_four_channel_inputs(pipeline: FacePipeline, astronaut: np.ndarray) -> None:
    grey = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    assert grey.ndim == 2
    g = pipeline.analyze(grey)
    assert len(g) == 1
    assert g[0].embedding is not None
    bgra = cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA)
    a = pipeline.analyze(bgra)
    ref = pipeline.analyze(astronaut)
    assert a[0].embedding is not None
    assert ref[0].embedding is not None
    assert float(a[0].embedding @ ref[0].embedding) > 0.999
    assert len(pipeline.analyze(astronaut.astype(np.float32) / 255.0)) == 1


def test_bad_images_raise_image_error(
    pipeline: FacePipeline, astronaut: np.ndarray, tmp_path: Path
) -> None:
    ok, jpg = cv2.imencode(".jpg", astronaut)
    assert ok
    data = jpg.tobytes()
    assert load_image(data).shape == astronaut.shape
    p = tmp_path / "a.jpg"
    p.write_bytes(data)
    assert load_image(p).shape == astronaut.shape
    bad: list[object] = [
        data[: len(data) // 2],
        b"",
        b"not an image at all",
        tmp_path / "missing.jpg",
    ]
    for src in bad:
        with pytest.raises(ImageError):
            load_image(src)  # type: ignore[arg-type]
    corrupt = bytearray(data)
    corrupt[2:400] = b"\x00" * 398
    with pytest.raises(ImageError):
        load_image(bytes(corrupt))
    for arr in (
        np.zeros((0, 0, 3), np.uint8),
        np.zeros((100, 100, 2), np.uint8),
        np.zeros((4, 4, 3), np.uint8),
        np.zeros((10, 10, 10, 3), np.uint8),
        np.full((50, 50), np.nan),
    ):
        with pytest.raises(ImageError):
            pipeline.analyze(arr)
    with pytest.raises(GatewayError):
        as_bgr("not an array")  # type: ignore[arg-type]
    assert issubclass(ImageError, GatewayError)


def test_load_reports_missing_model_by_name(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=models.YUNET):
        FacePipeline.load(tmp_path, FaceSettings())


def test_settings_validation() -> None:
    with pytest.raises(GatewayError, match="multiples of 32"):
        FaceSettings(detector_input=(300, 300))
    with pytest.raises(GatewayError, match="score_threshold"):
        FaceSettings(score_threshold=1.5)
    with pytest.raises(GatewayError, match="backend"):
        FaceSettings(backend="tensorflow")  # type: ignore[arg-type]
    with pytest.raises(GatewayError, match="tracked_size_ratio"):
        FaceSettings(tracked_size_ratio=0.2)
    assert (
        FaceSettings(backend="opencv", embedder_backend="onnxruntime").backend_for("embedder")
        == "onnxruntime"
    )


def test_opencv_backend_pipeline(
    model_dir: Path, astronaut: np.ndarray, pipeline: FacePipeline
) -> None:
    cvp = FacePipeline.load(model_dir, FaceSettings(backend="opencv", threads=1))
    a = cvp.analyze(astronaut)
    b = pipeline.analyze(astronaut)
    assert len(a) == len(b) == 1
    assert a[0].embedding is not None
    assert b[0].embedding is not None
    assert float(a[0].embedding @ b[0].embedding) > 0.99
    if pipeline.has_liveness:
        assert a[0].liveness == pytest.approx(b[0].liveness, abs=0.02)


@pytest.mark.shared
def test_spoof_samples_flagged_live_sample_passes(pipeline: FacePipeline) -> None:
    assert pipeline.has_liveness, "anti-spoofing models were not installed from ../shared"
    policy = LivenessPolicy.REQUIRED
    verdicts = {}
    for name in ("image_F1.jpg", "image_F2.jpg", "image_T1.jpg"):
        obs = pipeline.analyze(load_image(FACES / "spoof" / name))
        assert len(obs) == 1
        verdicts[name] = policy.allows(obs[0].liveness, 0.5)
    assert verdicts == {"image_F1.jpg": False, "image_F2.jpg": False, "image_T1.jpg": True}
    assert LivenessPolicy.ADVISORY.allows(0.0, 0.5)


def test_worker_latest_frame_wins_and_survives_errors() -> None:
    gate = threading.Event()
    seen: list[int] = []

    def slow(frame: np.ndarray) -> int:
        gate.wait(5)
        v = int(frame[0, 0])
        if v == 99:
            raise ValueError("bad frame")
        seen.append(v)
        return v

    async def main() -> None:
        w: FaceWorker[int] = FaceWorker(slow, name="cam-test")
        w.start()
        first = asyncio.ensure_future(w.process(np.full((2, 2), 1)))
        await asyncio.sleep(0.05)  # worker now busy with frame 1
        pending = [asyncio.ensure_future(w.process(np.full((2, 2), v))) for v in (2, 3, 4)]
        await asyncio.sleep(0.05)
        gate.set()
        r1 = await first
        rs = [await p for p in pending]
        assert r1 is not None
        assert r1.value == 1
        assert rs[0] is None
        assert rs[1] is None  # superseded, never processed
        assert rs[2] is not None
        assert rs[2].value == 4
        assert seen == [1, 4]
        assert w.dropped == 2
        err = await w.process(np.full((2, 2), 99))
        assert err is not None
        assert isinstance(err.error, ValueError)
        ok = await w.process(np.full((2, 2), 5))
        assert ok is not None
        assert ok.value == 5
        assert w.failed == 1
        w.stop()
        with pytest.raises(RuntimeError, match="not running"):
            await w.process(np.full((2, 2), 6))

    asyncio.run(asyncio.wait_for(main(), 10))


def test_worker_runs_pipeline_off_the_event_loop(
    pipeline: FacePipeline, astronaut: np.ndarray
) -> None:
    async def main() -> None:
        w = FaceWorker(pipeline.analyze, name="cam-1")
        w.start()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.ensure_future(ticker())
        t0 = time.perf_counter()
        res = await w.process(astronaut)
        elapsed = time.perf_counter() - t0
        t.cancel()
        w.stop()
        assert res is not None
        assert res.value is not None
        assert len(res.value) == 1
        assert ticks >= min(3, int(elapsed / 0.01))  # the loop kept running meanwhile

    asyncio.run(main())
