"""The cancelable template protection: keyed, non-invertible, score-preserving, renewable."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.face.protection import CancelableTransform, ProtectionError, score_scale

KEY_A = b"a" * 32
KEY_B = b"b" * 32


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True))


def _pairs(n: int, cos: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pairs of unit 128-d vectors at exactly cosine ``cos``."""
    rng = np.random.default_rng(seed)
    x = _unit(rng.standard_normal((n, 128)))
    r = rng.standard_normal((n, 128))
    r = _unit(r - np.sum(r * x, axis=1, keepdims=True) * x)
    return x, cos * x + math.sqrt(1 - cos * cos) * r


def test_stored_templates_are_unit_sign_vectors_fixed_by_the_key() -> None:
    t = CancelableTransform(KEY_A)
    x, _ = _pairs(5, 0.5)
    stored = t.enrol(x)
    assert stored.shape == (5, t.out_dim) == (5, 256)
    np.testing.assert_allclose(np.abs(stored), 1 / math.sqrt(256), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(CancelableTransform(KEY_A).enrol(x), stored)
    np.testing.assert_array_equal(t.enrol(x[0]), stored[0])  # one vector in, one out
    assert t.probe(x[0]).shape == (t.out_dim,)
    assert CancelableTransform(KEY_A).fingerprint == t.fingerprint
    assert CancelableTransform(KEY_B).fingerprint != t.fingerprint


def test_non_invertible_a_whole_subspace_and_every_magnitude_are_lost() -> None:
    t = CancelableTransform(KEY_A)
    assert np.linalg.matrix_rank(t.matrix) == t.rank == 112  # 16 directions never stored
    _, _, vt = np.linalg.svd(t.matrix)
    null = vt[t.rank :]  # directions the key holder cannot recover either
    x, _ = _pairs(1, 0.5, seed=3)
    other = _unit(x + 0.8 * null[0])  # a different face, cosine ~0.78 to x
    np.testing.assert_array_equal(t.enrol(x), t.enrol(other))
    np.testing.assert_array_equal(t.enrol(x), t.enrol(0.1 * x))


def test_probe_scores_estimate_the_cosine_times_the_scale() -> None:
    t = CancelableTransform(KEY_A)
    for cos in (0.0, 0.4, 0.8):
        x, y = _pairs(400, cos, seed=int(cos * 10))
        scores = np.sum(t.enrol(x) * t.probe(y), axis=1)
        assert abs(float(scores.mean()) / t.score_scale - cos) < 0.05
    assert t.score_scale == score_scale("cancelable") == pytest.approx(math.sqrt(2 / math.pi))
    assert score_scale("orthogonal") == 1.0


def test_two_keys_give_unrelated_templates_of_the_same_face() -> None:
    x, _ = _pairs(300, 0.5, seed=7)
    a, b = CancelableTransform(KEY_A), CancelableTransform(KEY_B)
    same_key = np.sum(a.enrol(x) * a.probe(x), axis=1)
    cross_key = np.sum(a.enrol(x) * b.probe(x), axis=1)
    assert same_key.mean() > 0.6
    assert abs(float(cross_key.mean())) < 0.02
    assert float(np.abs(cross_key).max()) < 0.3


def test_bad_input_and_parameters_are_refused() -> None:
    t = CancelableTransform(KEY_A)
    with pytest.raises(ProtectionError, match="expected n x 128"):
        t.enrol(np.ones((2, 64)))
    with pytest.raises(ProtectionError, match="non-finite"):
        t.probe(np.full((1, 128), np.nan))
    with pytest.raises(ProtectionError, match="16 bytes"):
        CancelableTransform(b"short")
    with pytest.raises(ProtectionError, match="rank"):
        CancelableTransform(KEY_A, rank=200)
