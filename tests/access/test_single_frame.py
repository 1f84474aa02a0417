"""The single-frame rule: a strong, live, fresh 1:N match decides on its own frame."""

from __future__ import annotations

import pytest

from gateway.access import (
    ApproachTracker,
    FaceMatch,
    FusionSettings,
    LivenessPolicy,
    Recognised,
    SingleFrameRule,
    SpoofSuspected,
)
from gateway.errors import ConfigError

CAM = "gate-cam"
RULE = SingleFrameRule(min_score=0.6, min_margin=0.2, min_live=0.9, max_age_ms=200.0)


def strong(person: str = "alice", **kw: object) -> FaceMatch:
    fields: dict[str, object] = {"live": True, "score": 0.7, "margin": 0.3, "live_score": 0.97}
    fields.update(kw)
    return FaceMatch(person, **fields)  # type: ignore[arg-type]


def tracker(policy: LivenessPolicy = LivenessPolicy.REQUIRED, **kw: object) -> ApproachTracker:
    rule = SingleFrameRule(**{**_rule_fields(), **kw})  # type: ignore[arg-type]
    return ApproachTracker(FusionSettings(liveness=policy, single=rule))


def _rule_fields() -> dict[str, object]:
    return {"min_score": 0.6, "min_margin": 0.2, "min_live": 0.9, "max_age_ms": 200.0}


def check(**kw: object) -> bool:
    args: dict[str, object] = {
        "score": 0.7,
        "margin": 0.3,
        "live_score": 0.95,
        "policy": LivenessPolicy.REQUIRED,
        "age_ms": 50.0,
    }
    args.update(kw)
    return RULE.strong(**args)  # type: ignore[arg-type]


def test_every_bar_must_be_cleared() -> None:
    assert check()
    assert check(score=0.6, margin=0.2, live_score=0.9, age_ms=200.0)  # bars are inclusive
    assert not check(score=0.599)
    assert not check(margin=0.19)
    assert not check(live_score=0.89)
    assert not check(age_ms=200.1)
    assert not check(age_ms=-1.0)  # a frame from the future: clock trouble, fuse instead


def test_anything_unknown_means_fuse() -> None:
    assert not check(score=None)
    assert not check(margin=None)
    assert not check(age_ms=None)
    assert not check(live_score=None)  # liveness unknown on a door that uses it
    assert not SingleFrameRule(enabled=False).strong(
        score=0.99, margin=0.9, live_score=0.99, policy=LivenessPolicy.OFF, age_ms=1.0
    )


def test_liveness_bar_applies_where_the_door_uses_liveness() -> None:
    assert not check(live_score=0.5, policy=LivenessPolicy.ADVISORY)
    assert check(live_score=None, policy=LivenessPolicy.OFF)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"min_score": 1.0}, "face.single_frame_score"),
        ({"min_live": 0.0}, "face.single_frame_liveness"),
        ({"min_margin": -0.1}, "face.single_frame_margin"),
        ({"max_age_ms": 0.0}, "face.single_frame_max_age_ms"),
    ],
)
def test_bad_bars_name_their_field(kw: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        SingleFrameRule(**kw)  # type: ignore[arg-type]


def test_a_frame_too_old_to_open_a_door_never_decides_alone() -> None:
    rule = SingleFrameRule(max_age_ms=400.0)
    t = ApproachTracker(FusionSettings(max_decision_age_ms=100.0, single=rule))
    assert t.observe(CAM, 100.0, [strong()], now=100.15) == []
    [rec] = ApproachTracker(FusionSettings(single=rule)).observe(CAM, 100.0, [strong()], 100.15)
    assert isinstance(rec, Recognised)
    assert rec.single_frame


def test_a_strong_fresh_frame_recognises_at_once() -> None:
    t = tracker()
    [rec] = t.observe(CAM, 100.0, [strong()], now=100.05)
    assert rec == Recognised(CAM, "alice", 100.0, single_frame=True)
    # once per approach: the next frames add nothing
    assert t.observe(CAM, 100.1, [strong()], now=100.15) == []


def test_weak_or_stale_first_frames_still_need_k_frames() -> None:
    for face, age in (
        (strong(score=0.55), 0.05),  # above match_threshold but not the single-frame bar
        (strong(margin=0.1), 0.05),  # a close runner-up
        (strong(live_score=0.7), 0.05),  # live, but not confidently
        (strong(), 0.5),  # a stale frame
        (FaceMatch("alice", live=True), 0.05),  # no evidence given (1:1, old callers)
    ):
        t = tracker()
        assert t.observe(CAM, 100.0, [face], now=100.0 + age) == []
        [rec] = t.observe(CAM, 100.2, [face], now=100.2 + age)
        assert isinstance(rec, Recognised)
        assert not rec.single_frame
    t = tracker()
    assert t.observe(CAM, 100.0, [strong()]) == []  # no decision time given: fused


def test_required_door_a_failed_liveness_frame_still_blocks() -> None:
    t = tracker()
    photo = strong(live=False, live_score=0.1, box=(100.0, 100.0, 50.0, 50.0))
    assert t.observe(CAM, 100.0, [photo], now=100.05) == []
    # the same face now scores live once: the spoof in the window blocks it
    moved = strong(box=(110.0, 100.0, 50.0, 50.0))
    assert t.observe(CAM, 100.1, [moved], now=100.15) == []
    out = t.observe(CAM, 100.2, [photo], now=100.25)
    assert out == [SpoofSuspected(CAM, 100.2)]
    assert t.observe(CAM, 100.3, [moved], now=100.35) == []  # nobody for the approach


def test_advisory_flagged_frames_never_decide_alone() -> None:
    t = tracker(LivenessPolicy.ADVISORY)
    flagged = strong(live=False)
    assert t.observe(CAM, 100.0, [flagged], now=100.05) == []
    [rec] = t.observe(CAM, 100.2, [flagged], now=100.25)
    assert isinstance(rec, Recognised)
    assert rec.liveness_flagged
    assert not rec.single_frame


def test_off_door_ignores_liveness_and_cooldown_still_holds() -> None:
    t = tracker(LivenessPolicy.OFF)
    face = strong(live=None, live_score=None)
    [rec] = t.observe(CAM, 100.0, [face], now=100.05)
    assert rec.single_frame  # type: ignore[union-attr]
    t.reset(CAM)
    assert t.observe(CAM, 101.0, [face], now=101.05) == []  # within cooldown_s


def test_only_the_strong_person_decides_alone() -> None:
    t = tracker()
    out = t.observe(CAM, 100.0, [strong("alice"), strong("bob", score=0.52)], now=100.05)
    assert [(o.person_id, o.single_frame) for o in out] == [("alice", True)]  # type: ignore[union-attr]
