"""A face path with a camera pair: frames joined within one frame, the 3-D verdict on the
largest good face, fused into the match; the second camera down stops the face path."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest

from gateway.access import ApproachTracker, FusionSettings, LivenessPolicy, LowQuality
from gateway.access.fusion import LIVENESS_UNAVAILABLE
from gateway.face.pair_verdict import TOO_FAR
from gateway.face.pipeline import FaceObservation
from gateway.face.relief import Relief
from gateway.face.stereo_check import StereoVerdict
from gateway.gate.camera import CapturedFrame, Mailbox
from gateway.gate.facepath import FacePath
from tests.gate import test_facepath as facepath_test
from tests.gate.test_facepath import BOX, verdict


class FakeCheck:
    """A stereo check that answers ``live`` and records the views it was given."""

    def __init__(self, live: bool | None) -> None:
        self.live = live
        self.views: list[tuple[np.ndarray, np.ndarray]] = []

    def check(self, first: np.ndarray, second: np.ndarray, box: Any, five: Any) -> StereoVerdict:
        self.views.append((first.copy(), second.copy()))
        if self.live is None:
            return StereoVerdict(None, "no_face_second_view", 1.0)
        reason = None if self.live else "nose"
        return StereoVerdict(Relief(0.4, 0.3, 0.4, 63.0, self.live, reason), reason, 1.0)


class TwoFaces:
    """A large face and a small one, both of good quality; ``box`` and ``emb`` of the large
    one may be changed between frames."""

    def __init__(self) -> None:
        self.box = BOX
        self.emb = np.ones(128, np.float32)

    def analyze(self, frame: np.ndarray, **kwargs: Any) -> list[FaceObservation]:
        small = (10.0, 10.0, 20.0, 20.0)
        return [
            FaceObservation(small, np.zeros((5, 2)), 0.9, verdict(True), 0.9, self.emb),
            FaceObservation(self.box, np.zeros((5, 2)), 0.9, verdict(True), 0.9, self.emb),
        ]


class Everyone:
    """A gallery that knows every face."""

    def identify(self, probe: Any, threshold: float, margin: float) -> str:
        return "person"

    def identify_ranked(
        self, probe: Any, threshold: float, margin: float
    ) -> tuple[str, None, None, str]:
        return "person", None, None, "person"  # no evidence: never a one/two-frame decision


class FakeSecond:
    """The second camera's capture: online or not, one frame in its mailbox."""

    def __init__(self, online: bool) -> None:
        self.online = online
        self.mailbox = Mailbox()


def make_path(
    check: FakeCheck, second: FakeSecond | None = None, faces: TwoFaces | None = None
) -> FacePath:
    return facepath_test.make_path(
        faces or TwoFaces(), Everyone(), stereo=cast(Any, check), second=cast(Any, second), fps=10.0
    )


def _frame(value: int, ts: float) -> CapturedFrame:
    return CapturedFrame(np.full((48, 64, 3), value, np.uint8), ts, 1)


@pytest.mark.parametrize("live", [True, False, None])
def test_the_3d_verdict_goes_to_the_largest_good_face(live: bool | None) -> None:
    check = FakeCheck(live)
    path = make_path(check)
    side_by_side = np.hstack([np.full((48, 64, 3), 1, np.uint8), np.full((48, 64, 3), 2, np.uint8)])
    small, large = path._analyze(side_by_side)
    assert (small.relief, large.relief) == (None, live)
    first, second = check.views[0]
    assert (first == 1).all()
    assert (second == 2).all()
    # fused: the 2-D model says live (0.9); the 3-D check decides the large face's verdict
    matches = path._match([small, large], None, 0.0)
    assert matches[1].live is live
    assert matches[0].live is None  # not measured in 3-D: counts neither way


def test_second_view_frames_are_matched_by_time() -> None:
    second = FakeSecond(online=True)
    path = make_path(FakeCheck(True), second)
    second.mailbox.put(_frame(2, 100.05))
    joined = path._joined(_frame(1, 100.0))
    assert joined is not None
    assert (joined[:, 64:] == 2).all()
    second.mailbox.put(_frame(2, 100.25))  # 2.5 frames apart: not a pair
    joined = path._joined(_frame(1, 100.0))
    assert joined is not None
    assert not joined[:, 64:].any()  # a blank second view: no 3-D verdict from this frame


def test_no_frame_is_used_while_the_second_camera_is_down() -> None:
    second = FakeSecond(online=False)
    path = make_path(FakeCheck(True), second)
    second.mailbox.put(_frame(2, 100.0))
    assert path._joined(_frame(1, 100.0)) is None


def test_a_confirmed_verdict_stands_in_for_two_frames_of_the_same_face_only() -> None:
    check, faces = FakeCheck(True), TwoFaces()
    path = make_path(check, faces=faces)
    frame = np.zeros((48, 128, 3), np.uint8)

    def relief() -> bool | None:
        path.motion_gate = None  # every frame is analysed
        return path._analyze(frame.copy())[1].relief

    assert [relief() for _ in range(5)] == [True] * 5
    assert len(check.views) == 3  # measured twice (they agree), reused twice, measured
    check.live = False
    faces.emb = -faces.emb  # someone else where the face was (a photo raised): measured now
    assert relief() is False
    assert len(check.views) == 4
    check.live = True
    x, y, w, h = faces.box
    faces.box = (x + 0.3 * w, y, w, h)  # moved by 30 % of its width: measured
    assert relief() is True
    assert len(check.views) == 5
    check.live = None  # no verdict: never reused
    faces.box = (x, y, w, h)
    assert [relief() for _ in range(2)] == [None, None]
    assert len(check.views) == 7


class FixedVerdict(FakeCheck):
    """A pair check that gives no verdict for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(None)
        self.reason = reason

    def check(self, first: np.ndarray, second: np.ndarray, box: Any, five: Any) -> StereoVerdict:
        return StereoVerdict(None, self.reason, 1.0)


@pytest.mark.parametrize(
    ("reason", "expected"), [(TOO_FAR, "too_small"), ("no_face_second_view", None)]
)
def test_a_face_too_far_for_the_pair_is_not_an_attempt_yet(
    reason: str, expected: str | None
) -> None:
    """A face the quality gate accepts but the pair cannot measure yet (too far for its
    depth) counts as too small, as a face below the quality gate's size does: the controller
    refuses nobody for it while they walk up. Any other "no verdict" stays "liveness
    unavailable", which is a refused attempt under liveness = required."""
    path = make_path(FixedVerdict(reason))
    path.motion_gate = None
    tracker = ApproachTracker(FusionSettings(liveness=LivenessPolicy.REQUIRED))
    outcomes = []
    for i in range(2):
        small, large = path._analyze(np.zeros((48, 128, 3), np.uint8))
        # the smaller face (someone behind) is too far as well: never "liveness unavailable"
        assert large.quality.ok is small.quality.ok is (expected is None)
        matches = path._match([small, large], None, 0.0)
        outcomes += tracker.observe("cam", 100.0 + 0.1 * i, matches)
    low = [o for o in outcomes if isinstance(o, LowQuality)]
    assert len(low) == 1
    assert low[0].reason == (expected or LIVENESS_UNAVAILABLE)
