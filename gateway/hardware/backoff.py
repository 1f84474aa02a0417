"""Capped exponential backoff with jitter, for reconnecting to devices (pure)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter (pure; rng injectable)."""

    initial_s: float = 0.2
    cap_s: float = 10.0
    factor: float = 2.0
    rng: Callable[[], float] = random.random
    attempts: int = 0

    def next_delay(self) -> float:
        """Delay before the next attempt; grows with each call up to ``cap_s``."""
        ceiling = min(self.cap_s, self.initial_s * self.factor**self.attempts)
        self.attempts += 1
        # half fixed, half jitter: never 0, never above the cap
        return ceiling / 2 + self.rng() * ceiling / 2

    def reset(self) -> None:
        """Forget failures after a success."""
        self.attempts = 0
