"""Scene realism: live heads move non-rigidly, photo/replay attacks move as one rigid plane.

The pure-image tests need neither ``gateway`` nor ``../shared`` (astronaut fallback works);
the last test runs the gateway's real face pipeline on a short approach (``models`` +
``shared``: real LFW faces and the MiniFASNet anti-spoofing models).
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import pytest

from hw_sim.corpus import FaceCorpus
from hw_sim.scenes import Actor, Scene, head_pose

W, H = 640, 480
ZONE = [(0.72, 0.12), (0.95, 0.12), (0.95, 0.42), (0.72, 0.42)]
REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", REPO.parent / "shared")).resolve()


def _affine_residual(a: np.ndarray, b: np.ndarray) -> float:
    """RMS residual (pixels) of the least-squares affine map taking points ``a`` onto ``b``."""
    src = np.hstack([a, np.ones((len(a), 1))])
    sol, *_ = np.linalg.lstsq(src, b, rcond=None)
    return float(np.sqrt(((src @ sol - b) ** 2).sum(axis=1).mean()))


def _iod(lm: np.ndarray) -> float:
    return float(np.hypot(*(lm[1] - lm[0])))


def _scene(corpus: FaceCorpus, variant: str, *, approach_s: float = 1.0) -> tuple[Scene, Actor]:
    name = corpus.residents(1)[0]
    scene = Scene(W, H, corpus, zones=[ZONE])
    actor = Actor(name, corpus.probe_index(name), variant, 0.0, approach_s=approach_s, linger_s=30)
    scene.add(actor)
    return scene, actor


def test_head_pose_is_smooth_and_small() -> None:
    ts = np.arange(0, 20, 1 / 30)
    poses = np.array([[p.yaw, p.pitch, p.roll, p.smile] for p in map(head_pose, ts)])
    assert np.degrees(np.abs(poses[:, :3])).max(axis=0).tolist() <= [7.01, 4.01, 2.01]
    assert np.degrees(np.ptp(poses[:, 0])) > 8  # it does turn
    rate = np.degrees(np.abs(np.diff(poses[:, :2], axis=0))).max() * 30
    assert rate < 25, f"head turns at {rate:.0f} deg/s: not a calm approach"
    assert head_pose(3.0, seed=1) != head_pose(3.0, seed=2)  # people differ
    assert head_pose(3.0, seed=1) == head_pose(3.0, seed=1)  # deterministic


@pytest.mark.parametrize("variant", ["photo", "replay"])
def test_attack_landmarks_move_by_exactly_one_affine_map(corpus: FaceCorpus, variant: str) -> None:
    scene, actor = _scene(corpus, variant, approach_s=3.0)
    lms = [scene.landmarks(actor, t) for t in np.arange(0.0, 6.0, 1 / 15)]
    worst = max(_affine_residual(a, b) / _iod(a) for a, b in itertools.pairwise(lms))
    far = max(_affine_residual(lms[0], b) / _iod(lms[0]) for b in lms)
    moved = max(float(np.abs(b - lms[0]).max()) for b in lms)
    assert moved > 20  # the attack does move (hand-held, walking up)
    assert worst < 1e-9
    assert far < 1e-9


def test_live_landmarks_move_non_affinely(corpus: FaceCorpus) -> None:
    scene, actor = _scene(corpus, "live")
    ts = np.arange(1.5, 9.5, 1 / 15)  # lingering at the door: only the head moves
    lms = [scene.landmarks(actor, t) for t in ts]
    lag = 8  # ~0.5 s
    res = np.array(
        [_affine_residual(a, b) / _iod(a) for a, b in zip(lms[:-lag], lms[lag:], strict=True)]
    )
    # a few degrees of yaw/pitch plus a smile: 0.5-2.5% of the eye distance, clearly > 0
    assert np.median(res) > 0.005
    assert np.percentile(res, 90) < 0.05  # and still small: the face stays a face
    steps = np.array([_affine_residual(a, b) / _iod(a) for a, b in itertools.pairwise(lms)])
    assert (steps > 1e-4).mean() > 0.9  # every frame-to-frame step has a non-rigid part


def _tracked_residual(scene: Scene, actor: Actor, t0: float, t1: float) -> tuple[float, float]:
    """Track corners on the face from t0 to t1 (pyramidal LK); affine-fit RMS residual (px)."""
    a, b = scene.render(t0), scene.render(t1)
    ga, gb = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.cvtColor(b, cv2.COLOR_BGR2GRAY)
    lm = scene.landmarks(actor, t0)
    iod = _iod(lm)
    mask = np.zeros_like(ga)
    centre = lm.mean(axis=0)
    cv2.ellipse(
        mask, (int(centre[0]), int(centre[1])), (int(iod * 0.9), int(iod * 1.0)), 0, 0, 360, 255, -1
    )
    pts = cv2.goodFeaturesToTrack(ga, 80, 0.01, 4, mask=mask)
    assert pts is not None
    assert len(pts) >= 15, "too few trackable corners on the face"
    nxt, status, _err = cv2.calcOpticalFlowPyrLK(ga, gb, pts, pts.copy(), winSize=(15, 15))
    back, status2, _err = cv2.calcOpticalFlowPyrLK(gb, ga, nxt, nxt.copy(), winSize=(15, 15))
    good = (status.ravel() == 1) & (status2.ravel() == 1)
    good &= np.linalg.norm((back - pts).reshape(-1, 2), axis=1) < 0.3  # forward-backward check
    p0, p1 = pts.reshape(-1, 2)[good].astype(np.float64), nxt.reshape(-1, 2)[good]
    assert len(p0) >= 12
    return _affine_residual(p0, p1.astype(np.float64)), iod


def test_rendered_pixels_confirm_live_non_rigid_and_photo_rigid(corpus: FaceCorpus) -> None:
    """Not just the model: optical flow measured on the rendered frames agrees."""
    live_scene, live = _scene(corpus, "live")
    photo_scene, photo = _scene(corpus, "photo")
    t0, t1 = 4.0, 4.6  # lingering: same size, head turning / photo rotating
    live_res, live_iod = _tracked_residual(live_scene, live, t0, t1)
    photo_res, photo_iod = _tracked_residual(photo_scene, photo, t0, t1)
    assert live_res / live_iod > 0.01, (live_res, live_iod)
    assert photo_res / photo_iod < 0.005, (photo_res, photo_iod)
    assert live_res > 3 * photo_res


def test_ground_truth_landmarks_follow_the_rendered_pixels(corpus: FaceCorpus) -> None:
    """``Scene.landmarks`` inverts the renderer's remap: LK-tracked landmarks agree (< 1 px)."""
    scene, actor = _scene(corpus, "live")
    t0, t1 = 4.0, 4.4
    ga = cv2.cvtColor(scene.render(t0), cv2.COLOR_BGR2GRAY)
    gb = cv2.cvtColor(scene.render(t1), cv2.COLOR_BGR2GRAY)
    a, b = scene.landmarks(actor, t0), scene.landmarks(actor, t1)
    assert float(np.abs(b - a).max()) > 1.0  # they do move between the two times
    start = a.astype(np.float32).reshape(-1, 1, 2)
    got, status, _err = cv2.calcOpticalFlowPyrLK(ga, gb, start, start.copy(), winSize=(21, 21))
    assert status.ravel().all()
    err = np.linalg.norm(got.reshape(-1, 2) - b, axis=1)
    assert err.max() < 1.0, err


def test_in_zone_face_stays_inside_the_zone(corpus: FaceCorpus) -> None:
    scene, actor = _scene(corpus, "in_zone")
    x0, y0, x1, y1 = ZONE[0][0] * W, ZONE[0][1] * H, ZONE[2][0] * W, ZONE[2][1] * H
    for t in np.arange(0.0, 8.0, 0.25):
        lm = scene.landmarks(actor, t)
        assert (lm > (x0, y0)).all()
        assert (lm < (x1, y1)).all()


def test_attack_cues_present(corpus: FaceCorpus) -> None:
    """Paper border + gloss on the photo; bezel, colour cast and moving glare on the phone."""
    scene, photo = _scene(corpus, "photo")
    a, b = scene._photo(photo, 160, 0.0), scene._photo(photo, 160, 2.5)
    assert a[1, a.shape[1] // 2].min() > 190  # white border
    assert not np.array_equal(a, b)  # the gloss moves
    _, phone = _scene(corpus, "replay")
    p, q = scene._phone(phone, 160, 0.0), scene._phone(phone, 160, 2.0)
    assert p[1, p.shape[1] // 2].max() < 60  # black bezel
    face = corpus.scaled(phone.name, phone.image_index, int(160 * 0.7)).astype(np.float64)
    b_ = (p.shape[1] - face.shape[1]) // 2  # bezel width
    screen = p[2 * b_ : -2 * b_, b_:-b_].astype(np.float64)
    assert screen.shape == face.shape
    cast = (screen[..., 0].mean() / screen[..., 2].mean()) / (
        face[..., 0].mean() / face[..., 2].mean()
    )
    assert cast > 1.1  # bluer than the face itself
    assert not np.array_equal(p, q)  # glare / moire move


# ---------------------------------------------------------------------- real pipeline
def _probe_module() -> ModuleType:
    path = REPO / "hw-sim" / "tools" / "probe_pipeline.py"
    spec = importlib.util.spec_from_file_location("hwsim_probe_pipeline", path)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def real_stats(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One short approach per variant through the gateway's real pipeline (~10 s)."""
    faces = SHARED / "faces" / "lfw-dev"
    antispoof = SHARED / "models" / "antispoof"
    if not faces.is_dir() or not (antispoof / "MiniFASNetV2.onnx").is_file():
        pytest.skip(f"needs ../shared (LFW faces + anti-spoofing models), absent at {SHARED}")
    pytest.importorskip("gateway.face.pipeline", reason="the gateway package is not installed")
    from gateway.face import models
    from gateway.face.pipeline import FacePipeline
    from gateway.face.settings import FaceSettings

    model_dir = tmp_path_factory.mktemp("models")
    models.install(model_dir, antispoof_dir=antispoof)
    pipe = FacePipeline.load(model_dir, FaceSettings(threads=1))
    assert pipe.has_liveness
    probe = _probe_module()
    corpus = FaceCorpus(faces)
    name = corpus.resolve("resident1")
    templates = probe.enrol(pipe, corpus, name, 3)
    return {
        v: probe.probe_variant(
            pipe, corpus, name, v, templates, fps=10.0, approach_s=2.0, linger_s=2.5
        ).summary(0.40)
        for v in ("live", "photo", "replay")
    }


@pytest.mark.models
@pytest.mark.shared
def test_real_pipeline_judges_variants(real_stats: dict[str, dict[str, Any]]) -> None:
    """(a) live resident recognised, (b) live judged live, (c) photo/replay judged attacks."""
    live, photo, replay = real_stats["live"], real_stats["photo"], real_stats["replay"]
    # (a) detected and recognised
    assert live["det_rate"] >= 0.9, live
    assert live["cos_ge_thr"] >= 0.8, live
    # (b) live: MiniFASNet on most frames, and the consistency check sees natural motion
    assert live["live_ge_0.5"] >= 0.7, live
    v = live["verdicts"]
    assert v.get("live", 0) > sum(v.values()) / 2, live
    # (c) attacks: MiniFASNet rejects them on most frames
    for att in (photo, replay):
        assert att["live_ge_0.5"] is not None, att
        assert att["live_ge_0.5"] <= 0.3, att


# Re-measured with dense landmarks (issue #19; hw-sim/tools/probe_dense_motion.py, 2 LFW
# identities, 10 fps, YuNet box -> MediaPipe's 468-point mesh, affine fit on all 468 points,
# frame pairs moving >= 0.01 eye distances). Median residual/motion ratio and share of pairs
# with ratio >= 0.08 (the tracker's min_ratio): live 0.20 / 94 %, photo 0.14 / 83 %,
# curved print 0.14 / 90 %, phone replay 0.41 / 100 %, tablet 0.39 / 99 %. Median residual
# (eye distances): live 0.0055, photo 0.0033, replay 0.0123. The mesh's frame-to-frame noise
# on a rigid print is as large as a live head's non-rigid motion, and larger on a screen
# (moire and glare move the mesh): no threshold on this ratio separates them, so dense
# landmarks do not rescue the check. The xfail stays; the stereo 3-D and NIR checks are the
# defences that work (benchmarks/results/stereo.json).
@pytest.mark.models
@pytest.mark.shared
@pytest.mark.xfail(
    strict=True,
    reason="KNOWN GAP: ConsistencyTracker's per-frame thresholds (min_nonrigid 0.004, "
    "min_ratio 0.08) sit below YuNet's landmark noise (~0.2 x motion on a rigid plane), so a "
    "moved photo/phone is judged 'live' on most frames; see hw-sim/tools/probe_pipeline.py. "
    "Dense (468-point) landmarks do not separate them either (measurements above)",
)
def test_consistency_tracker_flags_attacks(real_stats: dict[str, dict[str, Any]]) -> None:
    """Rigid attacks should get 'rigid'/'static' on most frames (fails today: see reason)."""
    for variant in ("photo", "replay"):
        v = real_stats[variant]["verdicts"]
        assert v.get("rigid", 0) + v.get("static", 0) > sum(v.values()) / 2, (variant, v)
