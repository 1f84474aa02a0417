"""Open-set 1:N search on synthetic embeddings with known outcomes."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.eval.identify import GalleryMatrix, search_all


def _unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_gallery_max_and_mean_fusion() -> None:
    enrolled = {"a": [_unit(1, 0, 0), _unit(0, 1, 0)], "b": [_unit(0, 0, 1)]}
    g_max = GalleryMatrix.build(enrolled, "max")
    g_mean = GalleryMatrix.build(enrolled, "mean")
    assert g_max.templates.shape == (3, 3)
    assert g_mean.templates.shape == (2, 3)
    probe = _unit(1, 0, 0)[None, :]
    assert g_max.person_scores(probe)[0].tolist() == pytest.approx([1.0, 0.0])
    assert g_mean.person_scores(probe)[0].tolist() == pytest.approx([1 / np.sqrt(2), 0.0])


def test_search_all_rank1_margin_and_failures() -> None:
    gallery = GalleryMatrix.build({"a": [_unit(1, 0, 0)], "b": [_unit(0, 1, 0)]})
    probes = [
        ("a", _unit(1, 0.1, 0)),  # hit
        ("b", _unit(1, 0.5, 0)),  # mated but closer to a: miss
        ("a", None),  # no face: miss
        ("z", _unit(0, 0, 1)),  # non-mated, scores 0
        ("z", None),  # non-mated without face
    ]
    out = search_all(gallery, probes, {"no_face": 2})
    assert out.n_mated == 3
    assert out.n_nonmated == 2
    assert out.mated_failed == 1
    assert out.nonmated_failed == 1
    assert out.rank1() == pytest.approx(1 / 3)
    assert out.mated_margin[0] == pytest.approx(_unit(1, 0.1, 0)[0] - _unit(1, 0.1, 0)[1])
    s = out.summary()
    assert s["rank1"] == pytest.approx(1 / 3)
    fnir = s["fnir_at_fpir"]
    assert isinstance(fnir, dict)
    assert fnir["0.01"]["fnir"] is None
    assert fnir["0.01"]["not_measurable"].startswith("not measurable with 2 non-mated searches")


def test_fnir_at_fpir_on_searches() -> None:
    rng = np.random.default_rng(3)
    dim = 32
    people = {f"p{i}": [_unit(*rng.normal(size=dim))] for i in range(20)}
    gallery = GalleryMatrix.build(people)
    probes: list[tuple[str, np.ndarray | None]] = []
    for name, (v,) in people.items():
        for _ in range(5):
            probes.append((name, _unit(*(v + rng.normal(0, 0.05, dim)))))
    for _ in range(200):
        probes.append(("stranger", _unit(*rng.normal(size=dim))))
    out = search_all(gallery, probes)
    assert out.rank1() == 1.0
    r = out.fnir_at(0.01)
    assert r.value == 0.0  # mates ~0.99, strangers' best ~0.6 at most
    assert r.achieved is not None
    assert r.achieved <= 0.01
    assert not out.fnir_at(0.001).measurable


def test_margin_rule_rejects_close_calls() -> None:
    gallery = GalleryMatrix.build({"a": [_unit(1, 0, 0)], "b": [_unit(0, 1, 0)]})
    close = _unit(1, 0.9, 0)  # a: 0.74, b: 0.67 -> margin 0.07
    probes: list[tuple[str, np.ndarray | None]] = [("a", close)] + [
        ("z", _unit(0, 0, 1)) for _ in range(100)
    ]
    out = search_all(gallery, probes)
    assert out.mated_margin[0] == pytest.approx(close[0] - close[1])
    assert out.fnir_at(0.01).value == 0.0
    assert out.fnir_at(0.01, margin=0.05).value == 0.0
    assert out.fnir_at(0.01, margin=0.1).value == 1.0
    assert out.summary(0.1)["margin"] == 0.1
