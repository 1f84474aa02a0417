"""Tailgating helper."""

from __future__ import annotations

import pytest

from gateway.access import (
    FLAG_TAILGATING,
    Decision,
    Reason,
    TailgatingVerdict,
    assess_tailgating,
    flag_tailgating,
)

GRANT = Decision(door="d", granted=True, reason=Reason.GRANTED, decided_at=1.0, evidence_ts=1.0)


def test_one_person_one_cycle_is_fine() -> None:
    assert assess_tailgating(faces_seen=1, open_cycles=1) == TailgatingVerdict(False, 0, 0)
    assert assess_tailgating(faces_seen=0, open_cycles=1) == TailgatingVerdict(False, 0, 0)
    assert assess_tailgating(faces_seen=1, open_cycles=0) == TailgatingVerdict(False, 0, 0)


def test_two_people_one_unlock() -> None:
    verdict = assess_tailgating(faces_seen=2, open_cycles=1)
    assert verdict == TailgatingVerdict(True, 1, 0)
    flagged = flag_tailgating(GRANT, verdict)
    assert FLAG_TAILGATING in flagged.flags
    assert flagged.granted
    assert GRANT.flags == frozenset()  # frozen original untouched


def test_two_open_cycles_one_unlock() -> None:
    assert assess_tailgating(faces_seen=1, open_cycles=2) == TailgatingVerdict(True, 0, 1)


def test_two_people_two_unlocks_is_fine() -> None:
    verdict = assess_tailgating(faces_seen=2, open_cycles=2, unlocks=2)
    assert not verdict.suspected
    assert flag_tailgating(GRANT, verdict) is GRANT


def test_negative_counts_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        assess_tailgating(faces_seen=-1, open_cycles=1)
