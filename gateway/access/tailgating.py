"""Tailgating helper: more people or door cycles than unlocks for one event."""

from __future__ import annotations

from dataclasses import dataclass

from .decision import FLAG_TAILGATING, Decision


@dataclass(frozen=True, slots=True)
class TailgatingVerdict:
    """``suspected`` when people or open cycles exceed unlocks (by ``extra_*``)."""

    suspected: bool
    extra_people: int
    extra_open_cycles: int


def assess_tailgating(faces_seen: int, open_cycles: int, unlocks: int = 1) -> TailgatingVerdict:
    """Compare the faces seen in the approach and the door's open cycles with the unlocks.

    Two faces for one unlock, or the door opening twice on one unlock, is suspected
    tailgating. ``faces_seen`` 0 (no camera, face path down) only judges open cycles.
    """
    if faces_seen < 0 or open_cycles < 0 or unlocks < 0:
        raise ValueError("faces_seen, open_cycles and unlocks cannot be negative")
    extra_people = max(0, faces_seen - unlocks)
    extra_cycles = max(0, open_cycles - unlocks)
    return TailgatingVerdict(extra_people > 0 or extra_cycles > 0, extra_people, extra_cycles)


def flag_tailgating(decision: Decision, verdict: TailgatingVerdict) -> Decision:
    """``decision`` with the ``tailgating_suspected`` flag when the verdict says so."""
    return decision.with_flag(FLAG_TAILGATING) if verdict.suspected else decision
