"""FacePath with its motion gate: idle frames skip the models, faces and enrolment do not."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from gateway.face.pipeline import FaceObservation
from gateway.face.quality import QualityVerdict
from gateway.gate import facepath
from tests.gate.test_facepath import BOX, make_path


class CountingPipeline:
    """One face per frame while ``face`` is set, else none; counts the frames it saw."""

    def __init__(self) -> None:
        self.face = False
        self.calls = 0

    def analyze(self, frame: np.ndarray, **kwargs: Any) -> list[FaceObservation]:
        self.calls += 1
        if not self.face:
            return []
        q = QualityVerdict(True, None, 30.0, 0.0, 0.0, 0.5, 100.0, 120.0, 1.0)
        return [FaceObservation(BOX, np.zeros((5, 2)), 0.9, q, None, np.ones(128, np.float32))]


def test_idle_frames_skip_the_models_until_something_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipe = CountingPipeline()
    path = make_path(pipe)
    clock = [100.0]
    monkeypatch.setattr(facepath.time, "monotonic", lambda: clock[0])
    still = np.full((96, 128, 3), 90, np.uint8)
    for _ in range(5):
        assert path._analyze(still.copy()) == []
        clock[0] += 1 / 15
    assert pipe.calls == 1, "an unchanged empty scene is analysed once"
    moved = still.copy()
    moved[20:80, 30:90] = 200  # someone steps in
    pipe.face = True
    assert len(path._analyze(moved.copy())) == 1
    clock[0] += 1 / 15
    assert len(path._analyze(moved.copy())) == 1, "a face in view: every frame is analysed"
    assert pipe.calls == 3


def test_enrolment_analyses_every_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = CountingPipeline()
    path = make_path(pipe)
    monkeypatch.setattr(facepath.time, "monotonic", lambda: 5.0)
    still = np.full((96, 128, 3), 90, np.uint8)
    path._analyze(still.copy())
    path._analyze(still.copy())
    assert pipe.calls == 1
    path.enrolment = asyncio.Queue()
    path._analyze(still.copy())
    path._analyze(still.copy())
    assert pipe.calls == 3


def test_without_a_gate_every_frame_is_analysed() -> None:
    pipe = CountingPipeline()
    path = make_path(pipe)
    path.motion_gate = None
    still = np.full((96, 128, 3), 90, np.uint8)
    for _ in range(4):
        path._analyze(still.copy())
    assert pipe.calls == 4
