"""Motion gate: an idle camera skips detection, and a face appearing is never found later
than one frame after the detector alone would find it."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import pytest

from gateway.face.motion import MotionGate
from gateway.face.pipeline import FacePipeline

FPS = 15.0
H, W = 480, 640


def background(seed: int = 0) -> np.ndarray:
    """A textured 640x480 scene (gradient, posts, a path), like a gate camera's view."""
    ys = np.linspace(0, 1, H, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, W, dtype=np.float32)[None, :]
    b = 150 + 40 * ys + 10 * xs
    g = 140 + 30 * ys + 15 * np.sin(xs * 6)
    r = 120 + 20 * ys + 0 * xs
    bg = np.stack([b, g, r], axis=-1).clip(0, 255).astype(np.uint8)
    cv2.rectangle(bg, (50, 40), (80, H), (70, 75, 80), -1)
    cv2.rectangle(bg, (560, 40), (590, H), (70, 75, 80), -1)
    return bg


def noisy(frame: np.ndarray, rng: np.random.Generator, sigma: float = 2.5) -> np.ndarray:
    """Camera sensor noise."""
    n = rng.normal(0.0, sigma, frame.shape)
    return np.asarray((frame.astype(np.float32) + n).clip(0, 255), np.uint8)


def paste(frame: np.ndarray, face: np.ndarray, x: int, y: int, alpha: float = 1.0) -> None:
    """Blend ``face`` into ``frame`` at (x, y), clipped to the frame."""
    fh, fw = face.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + fw, W), min(y + fh, H)
    if x1 <= x0 or y1 <= y0:
        return
    part = face[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
    dst = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = (alpha * part + (1 - alpha) * dst).astype(np.uint8)


Sequence = Callable[[np.ndarray], Iterator[np.ndarray]]


def appears(face: np.ndarray) -> Iterator[np.ndarray]:
    """Empty scene for 20 frames, then the face is there at once."""
    face = cv2.resize(face, (260, 260))
    for i in range(30):
        f = background()
        if i >= 20:
            paste(f, face, 190, 110)
        yield f


def slides_in(face: np.ndarray) -> Iterator[np.ndarray]:
    """Empty for 20 frames, then the face enters from the left edge, 6 pixels a frame."""
    face = cv2.resize(face, (240, 240))
    for i in range(90):
        f = background()
        paste(f, face, -240 + 6 * max(0, i - 20), 120)
        yield f


def fades_in(face: np.ndarray) -> Iterator[np.ndarray]:
    """Empty for 20 frames, then the face fades in (lights coming on), 3% a frame."""
    face = cv2.resize(face, (260, 260))
    for i in range(60):
        f = background()
        paste(f, face, 190, 110, alpha=min(1.0, 0.03 * max(0, i - 20)))
        yield f


def walks_up(face: np.ndarray) -> Iterator[np.ndarray]:
    """Empty for 20 frames, then a face grows from far away (24 px) by 4% a frame, as
    someone walking up."""
    for i in range(90):
        f = background()
        side = int(24 * 1.04 ** (i - 20))
        if i >= 20 and side <= 300:
            paste(f, cv2.resize(face, (side, side)), 320 - side // 2, 200 - side // 3)
        yield f


def first_face(pipeline: FacePipeline, frames: list[np.ndarray], gate: MotionGate | None) -> int:
    """Index of the first frame on which a face is detected (FacePath's use of the gate)."""
    for i, f in enumerate(frames):
        now = i / FPS
        if gate is not None and not gate.needs_analysis(f, now):
            continue
        faces = len(pipeline.detect(f))
        if gate is not None:
            gate.analysed(f, faces, now)
        if faces:
            return i
    raise AssertionError("no face detected in the whole sequence")


@pytest.fixture(scope="module")
def face(astronaut: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(astronaut[0:240, 140:380])  # the head and some shoulder


@pytest.mark.parametrize("sequence", [appears, slides_in, fades_in, walks_up])
def test_a_face_appearing_is_detected_on_its_frame_or_the_next(
    pipeline: FacePipeline, face: np.ndarray, sequence: Sequence
) -> None:
    rng = np.random.default_rng(7)
    frames = [noisy(f, rng) for f in sequence(face)]
    alone = first_face(pipeline, frames, None)
    gate = MotionGate()
    gated = first_face(pipeline, frames, gate)
    assert alone > 1, "the sequence must start without a detectable face"
    assert gated - alone in (0, 1), (alone, gated)
    assert gate.skipped > 0, "the gate never skipped a frame: it saved nothing"


def test_idle_noisy_camera_is_mostly_skipped() -> None:
    rng = np.random.default_rng(1)
    gate = MotionGate()
    analysed = 0
    for i in range(150):  # 10 s at 15 fps
        f = noisy(background(), rng, sigma=4.0)
        if gate.needs_analysis(f, i / FPS):
            analysed += 1
            gate.analysed(f, 0, i / FPS)
    # the first frame plus one refresh a second
    assert analysed <= 1 + 10
    assert gate.skipped == 150 - analysed


def test_a_face_in_view_keeps_every_frame_analysed() -> None:
    gate = MotionGate()
    f = background()
    for i in range(10):
        assert gate.needs_analysis(f, i / FPS)
        gate.analysed(f, 1, i / FPS)  # a face (even one the quality gate rejects)
    gate.analysed(f, 0, 1.0)
    assert not gate.needs_analysis(f, 1.05)


def test_slow_drift_is_compared_with_the_last_analysed_frame() -> None:
    gate = MotionGate(refresh_s=1e9)
    f = background()
    gate.analysed(f, 0, 0.0)
    looked = []
    for i in range(1, 30):  # one grey level brighter each frame: never a jump between two
        g = np.asarray(np.clip(f.astype(np.int16) + i, 0, 255), np.uint8)
        if gate.needs_analysis(g, i / FPS):
            looked.append(i)
            gate.analysed(g, 0, i / FPS)
    assert looked, "a slow change must not hide below the threshold frame after frame"
    assert looked[0] <= gate.threshold + 1
    assert all(b - a <= gate.threshold + 1 for a, b in itertools.pairwise(looked))


def test_refresh_and_reset_force_an_analysis() -> None:
    gate = MotionGate(refresh_s=1.0)
    f = background()
    gate.analysed(f, 0, 0.0)
    assert not gate.needs_analysis(f, 0.5)
    assert gate.needs_analysis(f, 1.0)
    gate.analysed(f, 0, 1.0)
    gate.reset()
    assert gate.needs_analysis(f, 1.1)
    gate.analysed(f, 0, 1.1)
    assert gate.needs_analysis(f[:240], 1.2), "a different frame size is a new scene"
    assert gate.needs_analysis(f, 0.5), "a clock going backwards is not trusted"
