"""The two-frame rule: two consecutive frames of the same face, each near the match threshold,
whose mean score clears it, decide on the second frame (issue #17)."""

from __future__ import annotations

import pytest

from gateway.access import (
    ApproachTracker,
    FaceMatch,
    FusionSettings,
    LivenessPolicy,
    PairRule,
    Recognised,
    SingleFrameRule,
    UnknownFace,
)
from gateway.errors import ConfigError
from gateway.face.settings import MatchSettings

CAM = "gate-cam"
BOX = (100.0, 80.0, 60.0, 70.0)
FAR = (500.0, 80.0, 60.0, 70.0)
BESIDE = (150.0, 80.0, 60.0, 70.0)  # a face-width to the side: near() says yes
GROWN = (95.0, 75.0, 45.0, 52.0)  # a quarter smaller
RULE = PairRule(threshold=0.5, margin=0.1, slack=0.03)  # not the default: a test value
NO_SINGLE = SingleFrameRule(enabled=False)


def face(score: float, *, who: str = "alice", lead: float = 0.2, **kw: object) -> FaceMatch:
    """A live face ranking ``who`` first; matched when score and lead clear RULE's bars."""
    matched = score >= RULE.threshold and lead >= RULE.margin
    fields: dict[str, object] = {
        "live": True,
        "score": score,
        "margin": lead,
        "live_score": 0.97,
        "box": BOX,
        "candidate": None if matched else who,
    }
    fields.update(kw)
    return FaceMatch(who if matched else None, **fields)  # type: ignore[arg-type]


def tracker(
    policy: LivenessPolicy = LivenessPolicy.REQUIRED, rule: PairRule = RULE, **kw: object
) -> ApproachTracker:
    return ApproachTracker(
        FusionSettings(liveness=policy, single=NO_SINGLE, pair=rule, **kw)  # type: ignore[arg-type]
    )


def play(t: ApproachTracker, *frames: list[FaceMatch]) -> list[list[object]]:
    return [
        t.observe(CAM, 100.0 + i * 0.066, f, now=100.0 + i * 0.066) for i, f in enumerate(frames)
    ]


def test_the_rule_bars() -> None:
    assert RULE.floor == pytest.approx(0.47)
    assert RULE.fires(0.47, 0.53)
    assert RULE.fires(0.5, 0.5)  # inclusive
    assert not RULE.fires(0.469, 0.6)  # one frame under the floor
    assert not RULE.fires(0.49, 0.509)  # the mean under the bar
    assert RULE.candidate(0.47, 0.1)
    assert not RULE.candidate(0.469, 0.5)
    assert not RULE.candidate(0.6, 0.09)  # a lead under the margin never pairs
    assert not RULE.candidate(None, 0.2)
    assert not RULE.candidate(0.6, None)
    off = PairRule(enabled=False)
    assert not off.fires(0.9, 0.9)
    assert not off.candidate(0.9, 0.9)


def test_the_defaults_are_the_per_frame_bars() -> None:
    base, rule = MatchSettings(), PairRule()
    assert (rule.threshold, rule.margin) == (base.threshold, base.margin)
    assert FusionSettings().pair == rule


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"threshold": 0.0}, "face.match_threshold"),
        ({"margin": -0.1}, "face.match_margin"),
        ({"slack": -0.01}, "face.pair_frames_slack"),
        ({"threshold": 0.3, "slack": 0.3}, "face.pair_frames_slack"),
    ],
)
def test_bad_bars_are_named(kw: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        PairRule(**kw)  # type: ignore[arg-type]
    assert field in str(err.value)


def test_a_resident_around_the_threshold_is_decided_on_the_second_frame() -> None:
    first, second = play(tracker(), [face(0.485)], [face(0.53)])
    assert first == []
    assert second == [Recognised(CAM, "alice", 100.066, pair_frames=True)]
    # and in the other order: a match, then a near miss
    first, second = play(tracker(), [face(0.53)], [face(0.485)])
    assert first == []
    assert second == [Recognised(CAM, "alice", 100.066, pair_frames=True)]


def test_without_the_rule_the_same_frames_wait_for_fusion() -> None:
    frames = play(
        tracker(rule=PairRule(enabled=False, threshold=0.5, margin=0.1)),
        [face(0.485)],
        [face(0.53)],
        [face(0.52)],
    )
    assert frames[:2] == [[], []]
    assert frames[2] == [Recognised(CAM, "alice", 100.132)]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (face(0.469), face(0.6)),  # under the floor, however strong the other
        (face(0.48), face(0.515)),  # mean 0.4975
        (face(0.49, who="bob"), face(0.53)),  # a different candidate
        (face(0.49, lead=0.05), face(0.53)),  # a lead under the margin
        (face(0.49, box=FAR), face(0.53)),  # not the same face: far apart
        (face(0.49, box=BESIDE), face(0.53)),  # near enough for fusion, not the same face
        (face(0.49, box=GROWN), face(0.53)),  # the size jumped: not the same face
        (face(0.49, box=None), face(0.53)),  # position unknown
        (face(0.49, live_score=0.4, live=None), face(0.53)),  # liveness unknown
    ],
)
def test_what_never_pairs(first: FaceMatch, second: FaceMatch) -> None:
    out = play(tracker(), [first], [second])
    assert not any(isinstance(o, Recognised) for frame in out for o in frame)


def test_a_flagged_face_never_pairs_on_an_advisory_door() -> None:
    t = tracker(LivenessPolicy.ADVISORY)
    out = play(t, [face(0.49, live=False)], [face(0.53)])
    assert out == [[], []]
    # unflagged faces do, on an advisory door as on one with liveness off
    assert play(tracker(LivenessPolicy.ADVISORY), [face(0.49)], [face(0.53)])[1] == [
        Recognised(CAM, "alice", 100.066, pair_frames=True)
    ]
    assert play(tracker(LivenessPolicy.OFF), [face(0.49, live=None)], [face(0.53, live=None)])[
        1
    ] == [Recognised(CAM, "alice", 100.066, pair_frames=True)]


def test_a_spoof_near_the_face_blocks_the_pair() -> None:
    photo = FaceMatch(None, live=False, box=BOX)
    out = play(tracker(), [face(0.49), photo], [face(0.53)])
    assert not any(isinstance(o, Recognised) for frame in out for o in frame)


def test_once_per_approach_and_the_cooldown_hold() -> None:
    t = tracker(cooldown_s=10.0)
    out = play(t, [face(0.49)], [face(0.53)], [face(0.49)], [face(0.53)])
    assert sum(isinstance(o, Recognised) for frame in out for o in frame) == 1
    # a new approach within the cooldown: still nobody decided
    later = t.observe(CAM, 103.0, [face(0.49)], now=103.0)
    later += t.observe(CAM, 103.066, [face(0.53)], now=103.066)
    assert later == []


def test_near_misses_that_never_pair_are_still_an_unknown_face() -> None:
    out = play(tracker(), [face(0.40)], [face(0.49)])
    assert out[1] == [UnknownFace(CAM, 100.066)]


def test_spoof_rules_are_fusions() -> None:
    """A failed face matching the person blocks them anywhere in the frame; one far away
    matching nobody does not (a bystander's bad frame), exactly as for fused frames."""
    photo_of_alice = FaceMatch("alice", live=False, box=FAR)
    out = play(tracker(), [face(0.49), photo_of_alice], [face(0.53)])
    assert not any(isinstance(o, Recognised) for frame in out for o in frame)
    bystander = FaceMatch(None, live=False, box=FAR)
    paired = play(tracker(), [face(0.49), bystander], [face(0.53), bystander])
    fused = play(tracker(), [face(0.53), bystander], [face(0.53), bystander])
    assert [[type(o) for o in f] for f in paired] == [[type(o) for o in f] for f in fused]


def test_only_consecutive_frames_pair() -> None:
    """A faceless frame between, or too long a gap, breaks the pair: the earlier frame is
    not this face any more (someone walked off, someone else stepped in)."""
    t = tracker()
    assert t.observe(CAM, 100.0, [face(0.53)], now=100.0) == []
    assert t.observe(CAM, 100.066, [], now=100.066) == []
    assert t.observe(CAM, 100.133, [face(0.485)], now=100.133) == []
    t = tracker()
    assert t.observe(CAM, 100.0, [face(0.53)], now=100.0) == []
    late = 100.0 + RULE.max_gap_ms / 1000 + 0.01
    assert t.observe(CAM, late, [face(0.485)], now=late) == []
    # within the gap (a skipped frame or two under load) it pairs
    t = tracker()
    assert t.observe(CAM, 100.0, [face(0.53)], now=100.0) == []
    out = t.observe(CAM, 100.2, [face(0.485)], now=100.2)
    assert out == [Recognised(CAM, "alice", 100.2, pair_frames=True)]


def test_a_failed_face_ranking_the_person_first_blocks_the_pair() -> None:
    """A photo failing liveness that ranks alice just below the bar, anywhere in the frame,
    stops near-miss evidence of alice deciding (fusion blocks a matched one the same way)."""
    photo = FaceMatch(None, live=False, box=FAR, score=0.49, margin=0.2, candidate="alice")
    out = play(tracker(), [photo], [face(0.56)], [face(0.47)])
    assert not any(isinstance(o, Recognised) for frame in out for o in frame)
    stranger_photo = FaceMatch(None, live=False, box=FAR, score=0.49, margin=0.2, candidate="bob")
    out = play(tracker(), [stranger_photo], [face(0.56)], [face(0.47)])
    assert out[2] == [Recognised(CAM, "alice", 100.132, pair_frames=True)]


def test_same_face() -> None:
    from gateway.access.pair_frames import same_face

    assert same_face(BOX, BOX)
    assert same_face(BOX, (110.0, 85.0, 66.0, 77.0))  # walking closer: moved, 10 % larger
    assert not same_face(BOX, BESIDE)
    assert not same_face(BOX, GROWN)
    assert not same_face(BOX, None)
    assert not same_face(None, None)
    assert not same_face(BOX, (100.0, 80.0, 0.0, 70.0))


def test_a_pair_counts_as_two_of_the_frames_a_stricter_door_asks_for() -> None:
    """fusion_k = 3: a pair alone never decides; a pair after one more matched frame does."""
    t = tracker(k=3, n=4)
    out = play(t, [face(0.485)], [face(0.53)])
    assert not any(isinstance(o, Recognised) for frame in out for o in frame)
    t = tracker(k=3, n=4)
    out = play(t, [face(0.52)], [face(0.485)], [face(0.53)])
    assert out[2] == [Recognised(CAM, "alice", 100.132, pair_frames=True)]


def test_on_an_advisory_door_a_failed_face_ranking_the_person_first_flags_the_pair() -> None:
    photo = FaceMatch(None, live=False, box=FAR, score=0.49, margin=0.2, candidate="alice")
    out = play(tracker(LivenessPolicy.ADVISORY), [face(0.49), photo], [face(0.53)])
    assert out[1] == [
        Recognised(CAM, "alice", 100.066, True, faces_in_approach=2, pair_frames=True)
    ]


def test_the_same_timestamp_never_pairs() -> None:
    t = tracker()
    assert t.observe(CAM, 100.0, [face(0.53)], now=100.0) == []
    assert t.observe(CAM, 100.0, [face(0.485)], now=100.0) == []  # gap 0: the same frame?
    t = tracker()
    assert t.observe(CAM, 100.0, [face(0.53)], now=100.0) == []
    assert t.observe(CAM, 100.0, [], now=100.0) == []  # a faceless frame, same clock tick
    assert t.observe(CAM, 100.066, [face(0.485)], now=100.066) == []


def test_two_near_misses_never_decide_even_with_looser_bars() -> None:
    """One of the two frames must have matched on its own: a tracker whose pair bars were
    (wrongly) looser than the face path's still never decides on two near misses."""
    loose = PairRule(threshold=0.45, margin=0.1, slack=0.03)
    miss = FaceMatch(None, live=True, score=0.5, margin=0.2, box=BOX, candidate="alice")
    out = play(tracker(rule=loose), [miss], [miss])
    assert not any(isinstance(o, Recognised) for frame in out for o in frame)
