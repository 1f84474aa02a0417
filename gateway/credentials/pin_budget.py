"""How many PINs an attacker can try per day under a lockout policy, and the odds (pure).

The lockout (:class:`gateway.credentials.hashing.LockoutPolicy`) allows ``free_attempts`` wrong
PINs, then locks for ``base_s * factor**k`` seconds (capped at ``max_s``) after each further
one; the count is forgotten only after ``reset_after_s`` without failures. An attacker who
guesses as soon as each lockout ends gets :func:`guesses_per_day` tries in any 24 hours. The
probability that one of ``g`` distinct guesses hits one of ``n`` PINs of ``digits`` digits
(uniformly chosen) is ``1 - C(10^d - n, g) / C(10^d, g)``, at most ``g * n / 10^d``
(:func:`success_probability`):

- card+PIN (and face+PIN): limited per claimed person, ``n = 1`` (the card's own PIN);
- PIN-only (1:N): limited per reader, and every enrolled PIN is a target (``n`` = PINs).
"""

from __future__ import annotations

from typing import Protocol

DAY_S = 86_400.0


class _Policy(Protocol):
    @property
    def free_attempts(self) -> int: ...
    @property
    def base_s(self) -> float: ...
    @property
    def factor(self) -> float: ...
    @property
    def max_s(self) -> float: ...
    @property
    def reset_after_s(self) -> float: ...


def _lock_after(failures: int, p: _Policy) -> float:
    if failures < p.free_attempts:
        return 0.0
    return float(min(p.max_s, p.base_s * p.factor ** (failures - p.free_attempts)))


def guesses_per_day(policy: _Policy, window_s: float = DAY_S) -> int:
    """Most wrong PINs one lockout subject accepts in ``window_s`` (from a clean slate: the
    worst window, since an idle counter only restarts the doubling from zero after
    ``reset_after_s``). Each guess is made the moment the previous lockout ends."""
    if policy.reset_after_s <= policy.max_s:
        raise ValueError("reset_after_s must exceed max_s, or the counter resets while locked")
    t, failures = 0.0, 0
    while t < window_s:
        failures += 1
        t += _lock_after(failures, policy)
        if failures > 10_000_000:  # base_s 0 and a 0 cap: unlimited
            raise ValueError("this lockout policy does not limit guessing")
    return failures


def success_probability(guesses: int, targets: int, digits: int) -> float:
    """Chance that ``guesses`` distinct PINs of ``digits`` digits hit one of ``targets``
    uniformly chosen PINs (exact hypergeometric complement)."""
    space = 10**digits
    if targets <= 0 or guesses <= 0:
        return 0.0
    if guesses + targets > space:
        return 1.0
    miss = 1.0  # C(space - targets, guesses) / C(space, guesses), as a product
    for i in range(guesses):
        miss *= (space - targets - i) / (space - i)
    return 1.0 - miss
