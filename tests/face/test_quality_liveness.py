"""Quality gate measures and the liveness policy / consistency tracker (pure parts)."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.access.decision import LivenessPolicy
from gateway.face.align import TEMPLATE_112, align, umeyama
from gateway.face.liveness import ConsistencyTracker, crop_box, softmax
from gateway.face.quality import assess, pose
from gateway.face.settings import QualityThresholds

FRONT = TEMPLATE_112 * 2 + 100  # a frontal face, eyes ~70 px apart


def texture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(60, 200, (112, 112, 3), dtype=np.uint8)


def test_pose_of_frontal_turned_rolled_faces() -> None:
    iod, yaw, roll, pitch = pose(FRONT)
    assert iod == pytest.approx(70.5, abs=0.5)
    assert abs(yaw) < 0.05
    assert abs(roll) < 1
    assert 0.4 < pitch < 0.6
    turned = FRONT.copy()
    turned[2, 0] += 40  # nose far to one side
    assert pose(turned)[1] > 0.5
    c, s = np.cos(np.radians(40)), np.sin(np.radians(40))
    rolled = (FRONT - 150) @ np.array([[c, s], [-s, c]]) + 150
    assert abs(pose(rolled)[2]) == pytest.approx(40, abs=1)
    assert abs(pose(rolled)[1]) < 0.05  # roll does not look like yaw


def test_assess_reasons_in_order() -> None:
    t = QualityThresholds()
    crop = texture()
    ok = assess(FRONT, crop, t)
    assert ok.ok
    assert ok.reason is None
    assert 0 < ok.score <= 1
    assert assess(FRONT / 4, crop, t).reason == "too_small"
    turned = FRONT.copy()
    turned[2, 0] += 40
    assert assess(turned, crop, t).reason == "not_frontal"
    flat = np.full((112, 112, 3), 128, np.uint8)
    v = assess(FRONT, flat, t)
    assert v.reason == "blurred"
    assert v.sharpness == pytest.approx(0.0)
    assert assess(FRONT, (crop // 8), t).reason == "underexposed"
    assert assess(FRONT, np.clip(crop.astype(int) + 120, 0, 255).astype(np.uint8), t).reason == (
        "overexposed"
    )


def test_size_hysteresis_only_for_a_tracked_face() -> None:
    t = QualityThresholds(min_interocular_px=80.0, tracked_size_ratio=0.85)
    crop = texture()
    # eyes ~70.5 px apart: under the strict 80, over the tracked 68
    assert assess(FRONT, crop, t).reason == "too_small"
    assert assess(FRONT, crop, t, tracked=True).ok
    # under 68 even a tracked face is too small
    shrunk = (FRONT - FRONT.mean(axis=0)) * 0.9 + FRONT.mean(axis=0)
    assert assess(shrunk, crop, t, tracked=True).reason == "too_small"
    # hysteresis relaxes only the size: a turned, tracked face still fails
    turned = FRONT.copy()
    turned[2, 0] += 40
    assert assess(turned, crop, t, tracked=True).reason == "not_frontal"
    # ratio 1.0 turns it off
    off = QualityThresholds(min_interocular_px=80.0, tracked_size_ratio=1.0)
    assert assess(FRONT, crop, off, tracked=True).reason == "too_small"


def test_umeyama_recovers_a_similarity_and_align_is_112() -> None:
    ang, sc, tx, ty = 0.3, 1.7, 12.0, -4.0
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) * sc
    src = FRONT
    dst = src @ rot.T + [tx, ty]
    m = umeyama(src, dst)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], [tx, ty], atol=1e-8)
    frame = np.zeros((400, 400, 3), np.uint8)
    assert align(frame, FRONT).shape == (112, 112, 3)


def test_policy_enum() -> None:
    assert LivenessPolicy("required") is LivenessPolicy.REQUIRED
    assert not LivenessPolicy.REQUIRED.allows(0.2, 0.5)
    assert not LivenessPolicy.REQUIRED.allows(None, 0.5)  # no model -> face cannot be used
    assert LivenessPolicy.REQUIRED.allows(0.9, 0.5)
    assert LivenessPolicy.ADVISORY.allows(0.1, 0.5)
    assert LivenessPolicy.OFF.allows(None, 0.5)


def test_crop_box_scales_and_stays_inside() -> None:
    assert crop_box((100, 100, 50, 50), 2.0, 640, 480) == (75, 75, 175, 175)
    x1, y1, x2, y2 = crop_box((0, 0, 100, 100), 2.7, 640, 480)
    assert (x1, y1) == (0, 0)
    assert x2 == pytest.approx(270, abs=1)
    x1, y1, x2, y2 = crop_box((400, 300, 200, 200), 4.0, 640, 480)  # scale capped by frame
    assert x1 >= 0
    assert y1 >= 0
    assert x2 <= 639
    assert y2 <= 479
    np.testing.assert_allclose(softmax(np.array([[0.0, 0.0]])), [[0.5, 0.5]])


def face_at(t: float, rng: np.random.Generator, *, live: bool) -> np.ndarray:
    """Landmarks of a face drifting sideways; live faces also deform (3-D, expression)."""
    lm = FRONT + np.array([5 * t * 30, 2 * np.sin(t * 10)])
    if live:
        lm = lm + rng.normal(0, 1.5, lm.shape)  # nose/mouth move relative to the eyes
    else:
        ang = 0.05 * np.sin(t * 7)
        s = 1 + 0.03 * t
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) * s
        lm = (lm - lm.mean(0)) @ rot.T + lm.mean(0)  # one similarity per frame
        lm = lm + rng.normal(0, 0.02, lm.shape)  # sub-pixel detector jitter
    out: np.ndarray = lm
    return out


def run(tracker: ConsistencyTracker, frames: list[np.ndarray], dt: float = 0.1) -> str:
    state = ""
    for i, lm in enumerate(frames):
        box = (float(lm[:, 0].min() - 20), float(lm[:, 1].min() - 30), 120.0, 140.0)
        state = tracker.update(lm, box, i * dt).state
    return state


def test_consistency_live_rigid_static_pending() -> None:
    rng = np.random.default_rng(0)
    k = 5
    live = [face_at(i / 10, rng, live=True) for i in range(k)]
    photo = [face_at(i / 10, rng, live=False) for i in range(k)]
    still = [FRONT + rng.normal(0, 0.05, FRONT.shape) for _ in range(k)]
    assert run(ConsistencyTracker(k), live) == "live"
    assert run(ConsistencyTracker(k), photo) == "rigid"
    assert run(ConsistencyTracker(k), still) == "static"
    assert run(ConsistencyTracker(k), live[:3]) == "pending"
    # an affine (not just similarity) move of a photo is rigid too
    shear = np.array([[1.0, 0.2], [0.0, 0.9]])
    sheared = [FRONT @ (np.eye(2) + (shear - np.eye(2)) * i / 4).T + [3 * i, 0] for i in range(k)]
    assert run(ConsistencyTracker(k), sheared) == "rigid"


def test_consistency_restarts_after_gap_or_jump_and_uses_injected_clock() -> None:
    rng = np.random.default_rng(1)
    tr = ConsistencyTracker(3, max_gap_s=0.5)
    frames = [face_at(i / 10, rng, live=True) for i in range(6)]
    box = (100.0, 100.0, 120.0, 140.0)
    assert tr.update(frames[0], box, 0.0).frames == 1
    assert tr.update(frames[1], box, 0.1).frames == 2
    assert tr.update(frames[2], box, 5.0).frames == 1  # gap
    assert tr.update(frames[3], (400.0, 100.0, 120.0, 140.0), 5.1).frames == 1  # jump
    assert tr.update(frames[4], (400.0, 100.0, 120.0, 140.0), 5.2).frames == 2
    assert tr.update(frames[5], (400.0, 100.0, 120.0, 140.0), 5.0).frames == 1  # clock back
    tr.reset()
    assert tr.update(frames[0], box, 9.0).state == "pending"
