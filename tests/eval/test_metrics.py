"""Metric code on small synthetic score sets with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.eval import metrics


def test_best_threshold_splits_separable_scores() -> None:
    thr = metrics.best_threshold([0.1, 0.2, 0.8, 0.9], [False, False, True, True])
    assert thr == pytest.approx(0.5)


def test_kfold_accuracy_separable_is_one() -> None:
    rng = np.random.default_rng(0)
    gen = rng.uniform(0.6, 1.0, 100)
    imp = rng.uniform(-0.2, 0.4, 100)
    scores = np.concatenate((gen, imp))
    labels = np.concatenate((np.ones(100, bool), np.zeros(100, bool)))
    folds = metrics.stratified_folds(labels, 10)
    res = metrics.kfold_accuracy(scores, labels, folds)
    assert res.mean == 1.0
    assert len(res.folds) == 10
    assert all(0.4 < f.threshold < 0.6 for f in res.folds)


def test_kfold_accuracy_counts_overlap_and_failed_pairs_as_errors() -> None:
    # 10 folds x (2 genuine + 2 impostor). Every fold has one impostor scoring 0.95: it is
    # above every possible accuracy-maximising threshold, so each fold loses 1 of 4.
    scores, labels, folds = [], [], []
    for f in range(10):
        scores += [0.9, 0.8, 0.95, 0.1]
        labels += [True, True, False, False]
        folds += [f] * 4
    res = metrics.kfold_accuracy(scores, labels, folds)
    assert res.mean == pytest.approx(0.75)
    # fail the genuine 0.9 pair of fold 3 (its NaN score is ignored): fold 3 drops to 2/4
    scores_f = np.array(scores)
    failed = np.zeros(40, bool)
    failed[12] = True
    scores_f[12] = np.nan
    res_f = metrics.kfold_accuracy(scores_f, labels, folds, failed)
    assert res_f.folds[3].accuracy == pytest.approx(0.5)
    assert res_f.mean == pytest.approx(0.75 - 0.25 / 10)


def test_kfold_rejects_nan_outside_failed() -> None:
    with pytest.raises(ValueError, match="NaN"):
        metrics.kfold_accuracy([np.nan, 0.1], [True, False], [0, 1])


def test_stratified_folds_deal_each_class_round_robin() -> None:
    labels = np.array([True] * 20 + [False] * 20)
    folds = metrics.stratified_folds(labels, 10)
    for f in range(10):
        assert (folds[labels] == f).sum() == 2
        assert (folds[~labels] == f).sum() == 2


def test_roc_known_points() -> None:
    thr, far, tar = metrics.roc([0.9, 0.8, 0.7], [0.1, 0.75])
    assert thr[0] == math.inf
    assert far[0] == 0.0
    assert tar[0] == 0.0
    points = dict(zip(thr.tolist(), zip(far.tolist(), tar.tolist(), strict=True), strict=True))
    assert points[0.8] == (0.0, pytest.approx(2 / 3))
    assert points[0.75] == (0.5, pytest.approx(2 / 3))
    assert points[0.7] == (0.5, 1.0)
    assert points[0.1] == (1.0, 1.0)


def test_threshold_for_fmr_allows_floor_target_times_n() -> None:
    imp = np.arange(100) / 100.0  # 0.00 .. 0.99
    thr = metrics.threshold_for_fmr(imp, 0.01)  # one false match allowed: only 0.99
    assert 0.98 < thr <= 0.99
    assert metrics.false_rate(imp, thr) == pytest.approx(0.01)
    thr0 = metrics.threshold_for_fmr(imp, 0.0)
    assert thr0 > 0.99
    assert metrics.false_rate(imp, thr0) == 0.0


def test_threshold_for_fmr_ties_kept_out() -> None:
    imp = np.array([0.5] * 5 + [0.1] * 95)
    thr = metrics.threshold_for_fmr(imp, 0.02)  # 2 allowed, but 5 tie at 0.5 -> all out
    assert thr > 0.5
    assert metrics.false_rate(imp, thr) == 0.0


def test_tar_at_far_known_and_not_measurable() -> None:
    imp = np.arange(100) / 100.0
    gen = np.array([0.985, 0.995, 0.5, 0.99])
    r = metrics.tar_at_far(gen, imp, 1e-2)
    assert r.measurable
    assert r.value == pytest.approx(0.75)  # 0.985, 0.995 and 0.99 reach a threshold in (0.98, 0.99]
    assert r.achieved == pytest.approx(0.01)
    r3 = metrics.tar_at_far(gen, imp, 1e-3)
    assert not r3.measurable
    assert r3.value is None
    assert r3.reason is not None
    assert r3.reason.startswith("not measurable with 100 impostor pairs")
    assert "not measurable with 100 impostor pairs" in r3.describe("TAR", "FAR")


def test_min_negatives_rule() -> None:
    assert metrics.min_negatives(1e-2) == 100
    assert metrics.min_negatives(1e-3) == 1000
    assert metrics.min_negatives(1e-4) == 10000
    assert metrics.not_measurable_reason(999, 1e-3) is not None
    assert metrics.not_measurable_reason(1000, 1e-3) is None


def test_fnir_at_fpir_known() -> None:
    nonmated = np.arange(100) / 100.0  # 0 .. 0.99 -> FPIR 1%: threshold in (0.98, 0.99]
    mated = np.array([0.995, 0.99, 0.97, 0.999, -np.inf])
    hit = np.array([True, True, True, False, False])  # 4th: wrong person; 5th: no face
    r = metrics.fnir_at_fpir(mated, hit, nonmated, 0.01)
    # accepted correctly: 0.995, 0.99 -> FNIR = 3/5
    assert r.value == pytest.approx(0.6)
    assert r.achieved == pytest.approx(0.01)
    r2 = metrics.fnir_at_fpir(mated, hit, nonmated, 0.001)
    assert r2.value is None
    assert r2.reason is not None
    assert "not measurable with 100 non-mated searches" in r2.reason


def test_clopper_pearson_known_values() -> None:
    lo, hi = metrics.clopper_pearson(0, 10)
    assert lo == 0.0
    assert hi == pytest.approx(1 - 0.025 ** (1 / 10), rel=1e-9)  # 0.30850
    lo, hi = metrics.clopper_pearson(5, 10)
    assert lo == pytest.approx(0.18709, abs=1e-5)
    assert hi == pytest.approx(0.81291, abs=1e-5)
    lo, hi = metrics.clopper_pearson(10, 10)
    assert hi == 1.0
    assert lo == pytest.approx(0.025 ** (1 / 10), rel=1e-9)


def test_clopper_pearson_matches_scipy_for_large_n() -> None:
    stats = pytest.importorskip("scipy.stats")
    for k, n in [(0, 20000), (3, 20000), (150, 1_000_000), (40, 100)]:
        lo, hi = metrics.clopper_pearson(k, n)
        exp_lo = 0.0 if k == 0 else stats.beta.ppf(0.025, k, n - k + 1)
        exp_hi = stats.beta.ppf(0.975, k + 1, n - k)
        assert lo == pytest.approx(exp_lo, rel=1e-6, abs=1e-12)
        assert hi == pytest.approx(exp_hi, rel=1e-6)


def test_rule_of_three_close_to_exact_one_sided_bound() -> None:
    n = 30000
    assert metrics.rule_of_three(n) == pytest.approx(1e-4)
    # exact one-sided 95% bound for 0 events: 1 - 0.05**(1/n) ~= 2.996/n
    _, hi = metrics.clopper_pearson(0, n, confidence=0.90)
    assert hi == pytest.approx(metrics.rule_of_three(n), rel=0.01)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="k <= n"):
        metrics.clopper_pearson(5, 3)
    with pytest.raises(ValueError, match="rate"):
        metrics.min_negatives(0.0)
    with pytest.raises(ValueError, match="impostor"):
        metrics.threshold_for_fmr([], 0.1)
