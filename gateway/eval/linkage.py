"""Cross-site linkage attacks on stored templates (ISO/IEC 30136 / 24745 unlinkability).

Two sites store templates of the same people under independent keys. The attacker holds
both sites' stored templates and knows who ``known`` of the people are at both sites; the
rest are to be linked: for each remaining person at site A, the attacker ranks every
remaining person at site B and links the best. Success = the share linked correctly
(chance = 1 / remaining). Attacks:

* ``procrustes``: fit the orthogonal map between the sites from the known pairs (orthogonal
  Procrustes) and compare the mapped A template with every B template. Recovers an
  orthogonal site transform exactly, whatever the data.
* ``ridge``: fit an unconstrained linear map (ridge regression) instead: the natural next
  try against a non-linear protection.
* ``profile``: no map at all: describe each person by their scores against the known
  people *within* each site and link the most correlated profiles. It needs only that
  matching works inside a site, so it bounds what any accuracy-preserving protection can
  hide from someone who holds the stored templates of both sites (the keys and encryption
  at rest are what stop that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
ATTACKS = ("procrustes", "ridge", "profile")


def _unit(a: F64) -> F64:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return np.asarray(a / np.where(norms == 0, 1.0, norms), dtype=np.float64)


def procrustes(a: F64, b: F64) -> F64:
    """The orthogonal ``w`` minimising ``|a @ w - b|`` (Schönemann 1966)."""
    u, _, vt = np.linalg.svd(a.T @ b, full_matrices=False)
    return np.asarray(u @ vt, dtype=np.float64)


def ridge(a: F64, b: F64, lam: float = 1.0) -> F64:
    """The ``w`` minimising ``|a @ w - b|^2 + lam |w|^2``, solved in the dual (n known)."""
    gram = a @ a.T + lam * np.eye(a.shape[0])
    return np.asarray(a.T @ np.linalg.solve(gram, b), dtype=np.float64)


def _profiles(rest: F64, known: F64) -> F64:
    s = rest @ known.T
    s = s - s.mean(axis=1, keepdims=True)
    return _unit(s)


def predict_scores(attack: str, a_known: F64, b_known: F64, a_rest: F64, b_rest: F64) -> F64:
    """(rest x rest) attacker's scores: row i = A person i against every B person."""
    if attack == "procrustes":
        return _unit(a_rest @ procrustes(a_known, b_known)) @ _unit(b_rest).T
    if attack == "ridge":
        return _unit(a_rest @ ridge(a_known, b_known)) @ _unit(b_rest).T
    if attack == "profile":
        return _profiles(a_rest, a_known) @ _profiles(b_rest, b_known).T
    raise ValueError(f"unknown attack {attack!r} (choose from {', '.join(ATTACKS)})")


@dataclass(frozen=True)
class Linkage:
    """Share of the remaining people linked correctly (top-1), over ``repeats`` splits."""

    attack: str
    known: int
    remaining: int
    success: float
    success_std: float
    chance: float

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "attack": self.attack,
            "known": self.known,
            "remaining": self.remaining,
            "success": self.success,
            "success_std": self.success_std,
            "chance": self.chance,
        }


def link(
    site_a: F64,
    site_b: F64,
    attack: str,
    known: int,
    *,
    repeats: int = 3,
    seed: int = 0,
) -> Linkage:
    """Run ``attack`` with ``known`` random known people; row i of both sites is person i."""
    n = site_a.shape[0]
    if site_b.shape[0] != n or not 0 < known < n - 1:
        raise ValueError(f"need equal rows at both sites and 0 < known < {n - 1}")
    rng = np.random.default_rng(seed)
    rates = []
    for _ in range(repeats):
        order = rng.permutation(n)
        k, r = order[:known], order[known:]
        scores = predict_scores(attack, site_a[k], site_b[k], site_a[r], site_b[r])
        rates.append(float(np.mean(np.argmax(scores, axis=1) == np.arange(len(r)))))
    return Linkage(
        attack, known, n - known, float(np.mean(rates)), float(np.std(rates)), 1 / (n - known)
    )


def two_sites(
    raw_a: F64, raw_b: F64, protect: Callable[[bytes, F64], F64], keys: tuple[bytes, bytes]
) -> tuple[F64, F64]:
    """The stored templates of two sites: ``protect(key, raw)`` under each site's key."""
    a = np.asarray(protect(keys[0], raw_a), dtype=np.float64)
    b = np.asarray(protect(keys[1], raw_b), dtype=np.float64)
    return a, b
