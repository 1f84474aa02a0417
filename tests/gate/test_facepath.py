"""FacePath bookkeeping that needs no model: which faces the quality gate treats as tracked."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import numpy as np
import pytest

from gateway.face.pipeline import FaceObservation
from gateway.face.quality import QualityVerdict
from gateway.face.settings import MatchSettings
from gateway.gate import facepath
from gateway.gate.facepath import FacePath
from gateway.privacy.zones import ZoneMasker

BOX = (100.0, 80.0, 60.0, 70.0)


def verdict(ok: bool) -> QualityVerdict:
    return QualityVerdict(
        ok, None if ok else "too_small", 30.0, 0.0, 0.0, 0.5, 100.0, 120.0, 1.0 if ok else 0.0
    )


class RecordingPipeline:
    """Returns one face per frame (accepted or not) and records the ``tracked`` it was given."""

    def __init__(self) -> None:
        self.accept = True
        self.calls: list[tuple[Any, ...]] = []

    def analyze(self, frame: np.ndarray, **kwargs: Any) -> list[FaceObservation]:
        self.calls.append(tuple(kwargs.get("tracked", ())))
        emb = np.ones(128, np.float32) if self.accept else None
        return [FaceObservation(BOX, np.zeros((5, 2)), 0.9, verdict(self.accept), None, emb)]


def make_path(pipeline: Any, gallery: Any = None, **more: Any) -> FacePath:
    none = cast(Any, None)
    return FacePath(
        camera="cam",
        door="door",
        reader=None,
        capture=none,
        pipeline=cast(Any, pipeline),
        gallery=gallery,
        transform=lambda x: x,
        masker=ZoneMasker("cam", []),
        engine=none,
        tracker=none,
        settings=MatchSettings(0.5, 0.1),
        sink=none,
        **more,
    )


def frame() -> np.ndarray:
    return np.zeros((48, 64, 3), np.uint8)


def test_a_face_accepted_in_the_last_frame_is_tracked(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = RecordingPipeline()
    path = make_path(pipe)
    clock = [1000.0]
    monkeypatch.setattr(facepath.time, "monotonic", lambda: clock[0])
    path._analyze(frame())
    clock[0] += 0.1
    path._analyze(frame())
    assert pipe.calls == [(), (BOX,)]
    # a frame whose face failed the gate ends the track
    pipe.accept = False
    path._analyze(frame())
    path._analyze(frame())
    assert pipe.calls[-1] == ()
    # too long since the last accepted face: not tracked
    pipe.accept = True
    path._analyze(frame())
    clock[0] += facepath.TRACK_S + 0.01
    path._analyze(frame())
    assert pipe.calls[-1] == ()


def test_enrolment_frames_always_get_the_strict_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = RecordingPipeline()
    path = make_path(pipe)
    monkeypatch.setattr(facepath.time, "monotonic", lambda: 5.0)
    path._analyze(frame())
    path.enrolment = asyncio.Queue()
    path._analyze(frame())
    path._analyze(frame())
    assert pipe.calls == [(), (), ()]
    path.enrolment = None
    path._analyze(frame())
    assert pipe.calls[-1] == (BOX,)


def test_iou_of_face_boxes() -> None:
    from gateway.face.pipeline import iou

    assert iou(BOX, BOX) == pytest.approx(1.0)
    assert iou((0, 0, 10, 10), (20, 0, 10, 10)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
