"""Biometric metrics on similarity scores (pure numpy, no I/O).

Convention everywhere: a comparison *matches* when ``score >= threshold``; higher = more similar.
A rate is only reported where the data can support it: a false-match/false-positive rate
``r`` needs at least ``ceil(1 / r)`` impostor comparisons (non-mated searches); otherwise the
result says "not measurable with N impostor pairs" instead of a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RateAt:
    """A rate (TAR or FNIR) read at a fixed false rate (FAR or FPIR), or why it cannot be."""

    target: float
    n_negative: int
    value: float | None
    threshold: float | None
    achieved: float | None
    reason: str | None = None

    @property
    def measurable(self) -> bool:
        return self.value is not None

    def describe(self, name: str, at: str) -> str:
        if self.value is None:
            return f"{name} @ {at}={self.target:g}: {self.reason}"
        return (
            f"{name} @ {at}={self.target:g}: {self.value:.4f} "
            f"(threshold {self.threshold:.4f}, measured {at} {self.achieved:.2e})"
        )


def rate_lines(summary: Mapping[str, object], table: str, name: str, at: str) -> list[str]:
    """One line per entry of the summary's rate table ``summary[table]`` (target -> the
    ``name``, threshold and ``measured_<at>`` it gave, or why it is not measurable)."""
    rates = summary[table]
    if not isinstance(rates, dict):
        raise TypeError(f"summary[{table!r}] must be a dict")
    value, measured = name.lower(), f"measured_{at.lower()}"
    lines = []
    for key, v in rates.items():
        if v[value] is None:
            lines.append(f"{name} @ {at}={key}: {v['not_measurable']}")
        else:
            lines.append(
                f"{name} @ {at}={key}: {v[value]:.4f} (threshold {v['threshold']:.4f}, "
                f"measured {at} {v[measured]:.2e})"
            )
    return lines


@dataclass(frozen=True)
class FoldResult:
    fold: int
    threshold: float
    accuracy: float
    n: int


@dataclass(frozen=True)
class KFoldAccuracy:
    mean: float
    std: float
    folds: tuple[FoldResult, ...]


def _as_scores(values: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} scores contain NaN/inf (a failed comparison must be scored)")
    return arr


def min_negatives(rate: float) -> int:
    """Fewest impostor comparisons that can support a false rate of ``rate``."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be in (0, 1), got {rate!r}")
    return math.ceil(1.0 / rate - 1e-9)


def not_measurable_reason(n_negative: int, rate: float, what: str = "impostor pairs") -> str | None:
    """None when ``n_negative`` comparisons can support ``rate``, else the reason why not."""
    if n_negative < min_negatives(rate):
        return f"not measurable with {n_negative} {what} (needs >= {min_negatives(rate)})"
    return None


def false_rate(negatives: npt.ArrayLike, threshold: float) -> float:
    """Fraction of negative (impostor) scores that match at ``threshold``."""
    neg = _as_scores(negatives, "impostor")
    return float(np.mean(neg >= threshold)) if neg.size else 0.0


def threshold_for_fmr(impostor: npt.ArrayLike, target: float) -> float:
    """Lowest threshold whose false-match rate on ``impostor`` is <= ``target``.

    With ``k = floor(target * N)`` false matches allowed, the threshold is the smallest float
    above the (k+1)-th highest impostor score, so at most ``k`` impostors reach it (ties
    are all kept out).
    """
    imp = np.sort(_as_scores(impostor, "impostor"))[::-1]
    if imp.size == 0:
        raise ValueError("no impostor scores to choose a threshold from")
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target FMR must be in [0, 1), got {target!r}")
    k = math.floor(target * imp.size + 1e-9)
    return float(np.nextafter(imp[k], np.inf))


def roc(
    genuine: npt.ArrayLike, impostor: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """ROC as (thresholds, FAR, TAR), thresholds descending (every distinct score, plus +inf)."""
    gen = _as_scores(genuine, "genuine")
    imp = _as_scores(impostor, "impostor")
    if gen.size == 0 or imp.size == 0:
        raise ValueError("ROC needs both genuine and impostor scores")
    thresholds = np.concatenate(([np.inf], np.unique(np.concatenate((gen, imp)))[::-1]))
    gen_sorted = np.sort(gen)
    imp_sorted = np.sort(imp)
    tar = (gen.size - np.searchsorted(gen_sorted, thresholds, side="left")) / gen.size
    far = (imp.size - np.searchsorted(imp_sorted, thresholds, side="left")) / imp.size
    return thresholds, far.astype(np.float64), tar.astype(np.float64)


def tar_at_far(genuine: npt.ArrayLike, impostor: npt.ArrayLike, far: float) -> RateAt:
    """True-accept rate at the threshold that keeps FAR <= ``far``; 'not measurable' if too few."""
    gen = _as_scores(genuine, "genuine")
    imp = _as_scores(impostor, "impostor")
    reason = not_measurable_reason(imp.size, far)
    if reason is not None:
        return RateAt(far, int(imp.size), None, None, None, reason)
    if gen.size == 0:
        return RateAt(far, int(imp.size), None, None, None, "no genuine pairs")
    thr = threshold_for_fmr(imp, far)
    return RateAt(far, int(imp.size), float(np.mean(gen >= thr)), thr, false_rate(imp, thr), None)


def best_threshold(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Threshold maximising accuracy (midpoint between neighbouring scores)."""
    s = _as_scores(scores, "pair")
    y = np.asarray(labels, dtype=bool).ravel()
    if s.size == 0:
        raise ValueError("no scores")
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    # threshold placed before index i: items < i rejected, items >= i accepted.
    n_pos = int(y.sum())
    # correct(i) = negatives below i + positives from i on
    neg_below = np.concatenate(([0], np.cumsum(~y)))
    pos_below = np.concatenate(([0], np.cumsum(y)))
    correct = neg_below + (n_pos - pos_below)
    # only split between distinct values
    valid = np.ones(s.size + 1, dtype=bool)
    valid[1:-1] = s[1:] != s[:-1]
    correct = np.where(valid, correct, -1)
    i = int(np.argmax(correct))
    if i == 0:
        return float(np.nextafter(s[0], -np.inf))
    if i == s.size:
        return float(np.nextafter(s[-1], np.inf))
    return float((s[i - 1] + s[i]) / 2.0)


def kfold_accuracy(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    folds: npt.ArrayLike,
    failed: npt.ArrayLike | None = None,
) -> KFoldAccuracy:
    """k-fold verification accuracy: threshold chosen on the other folds, tested on this one.

    ``failed`` marks pairs where a face was not found: they take no part in choosing the
    threshold and always count as an error in their test fold (their score is ignored).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    f = np.asarray(folds).ravel()
    bad = np.zeros(s.size, dtype=bool) if failed is None else np.asarray(failed, bool).ravel()
    if not s.size == y.size == f.size == bad.size:
        raise ValueError("scores, labels, folds and failed differ in length")
    if not np.all(np.isfinite(s[~bad])):
        raise ValueError("pair scores contain NaN/inf outside failed pairs")
    results = []
    for fold in np.unique(f):
        test = f == fold
        train = ~test & ~bad
        if not train.any():
            raise ValueError("k-fold accuracy needs at least two folds with scored pairs")
        thr = best_threshold(s[train], y[train])
        correct = (s[test] >= thr) == y[test]
        correct &= ~bad[test]
        results.append(FoldResult(int(fold), thr, float(np.mean(correct)), int(test.sum())))
    accs = np.array([r.accuracy for r in results])
    return KFoldAccuracy(float(accs.mean()), float(accs.std()), tuple(results))


def stratified_folds(labels: npt.ArrayLike, n_folds: int = 10) -> npt.NDArray[np.int64]:
    """Fold index per item: positives and negatives each dealt round-robin over ``n_folds``."""
    y = np.asarray(labels, dtype=bool).ravel()
    folds = np.zeros(y.size, dtype=np.int64)
    for value in (True, False):
        idx = np.flatnonzero(y == value)
        folds[idx] = np.arange(idx.size) % n_folds
    return folds


def fnir_at_fpir(
    mated_scores: npt.ArrayLike,
    mated_hit: npt.ArrayLike,
    nonmated_scores: npt.ArrayLike,
    fpir: float,
) -> RateAt:
    """FNIR at the threshold giving FPIR <= ``fpir`` (rank-1, open-set).

    ``mated_scores``: top-1 score of every mated search; ``mated_hit``: whether that top-1
    candidate is the mate (a failed search - no face - is a miss: pass hit=False).
    ``nonmated_scores``: top-1 score of every non-mated search (a failed non-mated search cannot
    false-alarm: leave it out, or pass -inf).
    """
    m = np.asarray(mated_scores, dtype=np.float64).ravel()
    hit = np.asarray(mated_hit, dtype=bool).ravel()
    nm = np.asarray(nonmated_scores, dtype=np.float64).ravel()
    if m.size != hit.size:
        raise ValueError("mated_scores and mated_hit differ in length")
    reason = not_measurable_reason(nm.size, fpir, "non-mated searches")
    if reason is not None:
        return RateAt(fpir, int(nm.size), None, None, None, reason)
    if m.size == 0:
        return RateAt(fpir, int(nm.size), None, None, None, "no mated searches")
    nm_finite = np.where(np.isfinite(nm), nm, -np.inf)
    k = math.floor(fpir * nm.size + 1e-9)
    top = np.sort(nm_finite)[::-1]
    thr = float(np.nextafter(top[k], np.inf)) if np.isfinite(top[k]) else -math.inf
    # a -inf score (failed or rejected search) is never an accept, whatever the threshold
    fnir = float(np.mean(~(hit & np.isfinite(m) & (m >= thr))))
    achieved = (
        float(np.mean(nm_finite >= thr)) if math.isfinite(thr) else float(np.mean(np.isfinite(nm)))
    )
    return RateAt(fpir, int(nm.size), fnir, thr, achieved, None)


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (pure numpy)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    if k >= n:
        return 1.0
    i = np.arange(k + 1, dtype=np.float64)
    log_comb = np.concatenate(([0.0], np.cumsum(np.log(n - i[:-1]) - np.log(i[1:]))))
    log_terms = log_comb + i * math.log(p) + (n - i) * math.log1p(-p)
    top = float(log_terms.max())
    return float(min(1.0, math.exp(top) * np.exp(log_terms - top).sum()))


def _solve_p(k: int, n: int, target_cdf: float) -> float:
    """p such that P(X <= k; n, p) = target_cdf (decreasing in p), by bisection."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if _binom_cdf(k, n, mid) > target_cdf:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15 * max(hi, 1e-300):
            break
    return (lo + hi) / 2.0


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided Clopper-Pearson interval for ``k`` successes in ``n`` trials."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    alpha = 1.0 - confidence
    upper = 1.0 if k == n else _solve_p(k, n, alpha / 2.0)
    # lower bound: P(X >= k; p) = alpha/2  <=>  P(X <= k-1; p) = 1 - alpha/2
    lower = 0.0 if k == 0 else _solve_p(k - 1, n, 1.0 - alpha / 2.0)
    return lower, upper


def rule_of_three(n: int) -> float:
    """Approximate 95% upper bound on a rate when 0 events were seen in ``n`` trials."""
    if n <= 0:
        raise ValueError("n must be positive")
    return 3.0 / n
