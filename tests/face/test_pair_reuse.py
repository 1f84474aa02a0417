"""Reuse of a pair check's verdict: only the same face, same place, a few frames, briefly."""

from __future__ import annotations

import numpy as np

from gateway.face.pair_reuse import VerdictReuse

BOX = (100.0, 80.0, 120.0, 150.0)
EMB = np.linspace(-1, 1, 128)


def test_a_pass_is_reused_once_confirmed_and_for_at_most_max_frames() -> None:
    r = VerdictReuse(max_frames=2)
    assert r.lookup(BOX, EMB, 0.0) is None  # nothing measured yet
    r.store(BOX, EMB, True, 0.0)
    assert r.lookup(BOX, EMB, 0.1) is None  # one pass alone is measured again
    r.store(BOX, EMB, True, 0.1)  # two in a row agree: reused
    assert r.lookup(BOX, EMB * 3, 0.2) is True  # the same direction: the same person
    assert r.lookup(BOX, EMB, 0.3) is True
    assert r.lookup(BOX, EMB, 0.4) is None  # measure again
    r.store(BOX, EMB, True, 0.4)  # agrees with the last measurement: reused again
    assert r.lookup(BOX, EMB, 0.5) is True


def test_a_failure_is_reused_once_confirmed_and_a_change_of_mind_is_not() -> None:
    r = VerdictReuse(max_frames=2)
    r.store(BOX, EMB, True, 0.0)
    r.store(BOX, EMB, True, 0.1)
    r.store(BOX, EMB, False, 0.2)
    # one failure of a live face alone is measured again: reused at once, it made the two
    # failing frames of a spoof_suspected refusal out of one spurious measurement
    assert r.lookup(BOX, EMB, 0.3) is None
    r.store(BOX, EMB, False, 0.3)  # two in a row: an attack, reused as a failure
    assert r.lookup(BOX, EMB, 0.4) is False
    r.store(BOX, EMB, True, 0.5)  # after a failure, one pass is not enough
    assert r.lookup(BOX, EMB, 0.6) is None


def test_another_face_a_move_a_new_size_or_an_old_verdict_is_measured() -> None:
    r = VerdictReuse(max_frames=5, max_age_s=0.5)
    r.store(BOX, EMB, False, 9.95)
    r.store(BOX, EMB, False, 10.0)
    other = np.roll(EMB, 40) * np.cos(np.arange(128))
    assert r.lookup(BOX, other, 10.1) is None  # another person's embedding
    assert r.lookup((130.0, 80.0, 120.0, 150.0), EMB, 10.1) is None  # moved by 25 % of w
    assert r.lookup((100.0, 80.0, 150.0, 180.0), EMB, 10.1) is None  # 25 % larger
    assert r.lookup(BOX, EMB, 10.6) is None  # older than max_age_s
    assert r.lookup(BOX, EMB, 9.0) is None  # a clock that went back
    assert r.lookup(BOX, None, 10.1) is None
    assert r.lookup((105.0, 82.0, 125.0, 150.0), EMB, 10.2) is False  # same face, moved a bit


def test_no_verdict_is_never_kept() -> None:
    r = VerdictReuse()
    r.store(BOX, EMB, False, 0.0)
    r.store(BOX, EMB, None, 0.1)
    assert r.lookup(BOX, EMB, 0.2) is None
    r.store(BOX, None, False, 0.3)
    assert r.lookup(BOX, EMB, 0.4) is None


def test_after_a_failure_a_pass_of_the_same_face_is_never_reused() -> None:
    """A photo that fails once and then passes by chance is measured on every frame: its
    passes are never multiplied, so a grant needs a whole window of measured passes (the
    fusion blocks the person while the failure is in its window). A "no verdict" between
    does not clear the failure; another face does."""
    r = VerdictReuse(max_frames=2)
    r.store(BOX, EMB, False, 0.0)
    r.store(BOX, EMB, True, 0.1)
    r.store(BOX, EMB, True, 0.2)  # two passes agree, but this face failed: not reused
    assert r.lookup(BOX, EMB, 0.3) is None
    r.store(BOX, EMB, None, 0.3)  # no verdict: the failure is kept
    r.store(BOX, EMB, True, 0.4)
    r.store(BOX, EMB, True, 0.5)
    assert r.lookup(BOX, EMB, 0.6) is None
    other = np.roll(EMB, 40) * np.cos(np.arange(128))
    r.store(BOX, other, True, 0.6)  # another person: a fresh face
    r.store(BOX, other, True, 0.7)
    assert r.lookup(BOX, other, 0.8) is True
