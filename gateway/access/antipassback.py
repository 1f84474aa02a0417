"""Anti-passback between paired doors: who entered must exit before entering again."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AntiPassbackMode(StrEnum):
    """``soft`` grants a repeated entry but flags it; ``hard`` denies it."""

    SOFT = "soft"
    HARD = "hard"


@dataclass(frozen=True, slots=True)
class AntiPassbackPair:
    """An entry door and its exit door.

    A passage through ``entry`` marks the person inside until a passage through ``exit``
    (or ``forget_after_s`` seconds, when set, so a missed exit does not lock anyone out for
    ever). For symmetric rules give two pairs (A->B and B->A).
    """

    entry: str
    exit: str
    mode: AntiPassbackMode = AntiPassbackMode.HARD
    forget_after_s: float | None = None

    def __post_init__(self) -> None:
        if self.entry == self.exit:
            raise ValueError(f"anti-passback pair needs two different doors, got {self.entry!r}")
        if self.forget_after_s is not None and self.forget_after_s <= 0:
            raise ValueError("forget_after_s must be positive")


class AntiPassbackState:
    """In-memory passage state (pure: the clock is passed in). Lost on restart, by design."""

    def __init__(self, pairs: tuple[AntiPassbackPair, ...] = ()) -> None:
        self.pairs = pairs
        self._inside: dict[AntiPassbackPair, dict[str, float]] = {p: {} for p in pairs}

    def violation(self, door: str, person_id: str, now: float) -> AntiPassbackPair | None:
        """The strictest pair that a passage of ``person_id`` through ``door`` would break."""
        found: AntiPassbackPair | None = None
        for pair in self.pairs:
            if pair.entry != door:
                continue
            entered = self._inside[pair].get(person_id)
            if entered is None:
                continue
            if pair.forget_after_s is not None and now - entered >= pair.forget_after_s:
                continue
            if found is None or pair.mode is AntiPassbackMode.HARD:
                found = pair
        return found

    def record(self, door: str, person_id: str, now: float) -> None:
        """Record that ``person_id`` passed ``door`` at ``now``."""
        for pair in self.pairs:
            if pair.entry == door:
                self._inside[pair][person_id] = now
            elif pair.exit == door:
                self._inside[pair].pop(person_id, None)

    def inside(self, pair: AntiPassbackPair) -> frozenset[str]:
        """People currently marked inside for ``pair``."""
        return frozenset(self._inside.get(pair, {}))

    def prune(self, now: float) -> None:
        """Drop entries older than their pair's ``forget_after_s``."""
        for pair, people in self._inside.items():
            if pair.forget_after_s is None:
                continue
            limit = pair.forget_after_s
            for pid in [p for p, ts in people.items() if now - ts >= limit]:
                del people[pid]
