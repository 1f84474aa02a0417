"""The face path with the real gallery and tracker: one strong frame decides, an ambiguous one
is fused, a photo never decides (issue #17 item 1). The models are replaced by fixed
observations; everything after them (matching, evidence, fusion, freshness) is the daemon's."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import numpy as np

from gateway import access
from gateway.access import ApproachTracker, FaceMode, FusionSettings, LivenessPolicy
from gateway.face.gallery import Gallery
from gateway.face.pipeline import FaceObservation
from gateway.face.quality import QualityVerdict
from gateway.face.settings import MatchSettings
from gateway.gate.camera import CapturedFrame
from gateway.gate.facepath import FacePath
from gateway.privacy.zones import ZoneMasker

BOX = (100.0, 80.0, 60.0, 70.0)
OK = QualityVerdict(True, None, 30.0, 0.0, 0.0, 0.5, 100.0, 120.0, 1.0)


def unit(i: int) -> np.ndarray:
    v = np.zeros(128, np.float32)
    v[i] = 1.0
    return v


def mix(alice: float, bob: float) -> np.ndarray:
    """A probe scoring ``alice`` against alice and ``bob`` against bob (cosine)."""
    rest = np.sqrt(1.0 - alice**2 - bob**2)
    return (alice * unit(0) + bob * unit(1) + rest * unit(2)).astype(np.float32)


class FixedPipeline:
    """One face per frame with the given embedding(s, one per frame in turn) and live
    probability."""

    def __init__(self, embedding: np.ndarray | list[np.ndarray], live: float) -> None:
        self.embeddings = embedding if isinstance(embedding, list) else [embedding]
        self.live, self.calls = live, 0

    def analyze(self, frame: np.ndarray, **kwargs: Any) -> list[FaceObservation]:
        emb = self.embeddings[min(self.calls, len(self.embeddings) - 1)]
        self.calls += 1
        return [FaceObservation(BOX, np.zeros((5, 2)), 0.9, OK, self.live, emb)]


def run_frames(
    embedding: np.ndarray | list[np.ndarray], live: float, frames: int
) -> list[list[Any]]:
    """Outcomes after each frame of one approach at a door whose liveness is required."""
    gallery = Gallery()
    gallery.replace_person("alice", unit(0)[None])
    gallery.replace_person("bob", unit(1)[None])
    seen: list[Any] = []
    per_frame: list[list[Any]] = []

    async def sink(camera: str, outcome: access.FusionOutcome) -> None:
        seen.append(outcome)

    path = FacePath(
        camera="cam",
        door="door",
        reader=None,
        capture=cast(Any, None),
        pipeline=cast(Any, FixedPipeline(embedding, live)),
        gallery=gallery,
        transform=lambda x: x,
        masker=ZoneMasker("cam", []),
        engine=cast(Any, None),
        tracker=ApproachTracker(FusionSettings(liveness=LivenessPolicy.REQUIRED)),
        settings=MatchSettings(),
        sink=sink,
    )
    path._mode_and_claim = lambda: (FaceMode.IDENTIFY, None)  # type: ignore[method-assign]

    async def play() -> None:
        path.worker.start()
        try:
            for i in range(frames):
                image = np.zeros((48, 64, 3), np.uint8)
                await path._process(CapturedFrame(image, time.monotonic(), i), time.time())
                per_frame.append(list(seen))
                seen.clear()
                await asyncio.sleep(0.01)
        finally:
            path.worker.stop()

    asyncio.run(play())
    return per_frame


RULE = FusionSettings().single  # the calibrated defaults
BASE = MatchSettings()
STRONG = mix(min(0.95, RULE.min_score + 0.1), 0.0)
#: above match_threshold and match_margin, below the single-frame score bar
AMBIGUOUS_SCORE = (BASE.threshold + RULE.min_score) / 2
AMBIGUOUS = mix(AMBIGUOUS_SCORE, AMBIGUOUS_SCORE - (BASE.margin + RULE.min_margin) / 2)


def test_a_strong_first_frame_is_recognised_on_that_frame() -> None:
    first, second = run_frames(STRONG, live=0.99, frames=2)
    [rec] = first
    assert isinstance(rec, access.Recognised)
    assert rec.person_id == "alice"
    assert rec.single_frame
    presented = access.as_presented(rec)
    assert presented is not None
    assert presented.result is access.FaceResult.MATCH
    assert second == []  # once per approach


def test_an_ambiguous_face_is_still_fused_over_two_frames() -> None:
    first, second = run_frames(AMBIGUOUS, live=0.99, frames=2)
    assert first == []
    [rec] = second
    assert isinstance(rec, access.Recognised)
    assert rec.person_id == "alice"
    assert not rec.single_frame


def test_a_face_not_confidently_live_is_fused() -> None:
    first, second = run_frames(STRONG, live=(BASE.liveness_threshold + RULE.min_live) / 2, frames=2)
    assert first == []
    assert len(second) == 1
    assert not second[0].single_frame


def test_a_photo_of_a_resident_never_decides() -> None:
    frames = run_frames(STRONG, live=0.05, frames=3)
    assert frames[0] == []
    assert [type(o) for o in frames[1]] == [access.SpoofSuspected]
    assert frames[2] == []


#: a resident scoring around the match threshold, as resident4 of bench_loop does
NEAR_BELOW = mix(BASE.threshold - 0.017, 0.1)
NEAR_ABOVE = mix(BASE.threshold + 0.052, 0.1)


def test_two_frames_around_the_threshold_decide_on_the_second() -> None:
    """First frame just below the bar (no per-frame match), the second above it: their mean
    clears the bar, so the door opens on the second frame instead of waiting for a third."""
    first, second = run_frames([NEAR_BELOW, NEAR_ABOVE], live=0.99, frames=2)
    assert first == []
    [rec] = second
    assert isinstance(rec, access.Recognised)
    assert (rec.person_id, rec.pair_frames, rec.single_frame) == ("alice", True, False)


def test_two_frames_whose_mean_is_below_the_bar_wait_for_fusion() -> None:
    below = mix(BASE.threshold - 0.02, 0.1)
    barely = mix(BASE.threshold + 0.01, 0.1)
    frames = run_frames([below, barely, barely], live=0.99, frames=3)
    assert frames[:2] == [[], []]
    [rec] = frames[2]  # fusion: 2 matched frames of 3
    assert isinstance(rec, access.Recognised)
    assert not rec.pair_frames


def test_a_near_miss_photo_never_pairs() -> None:
    frames = run_frames([NEAR_BELOW, NEAR_ABOVE], live=0.05, frames=2)
    assert frames[0] == []
    assert [type(o) for o in frames[1]] == [access.SpoofSuspected]
