"""Threshold/margin selection, confidence bounds and the in-place TOML edit."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from gateway.errors import ConfigError
from gateway.eval import calibrate as cal
from gateway.eval import metrics


def test_calibrate_scores_known_threshold_and_bounds() -> None:
    imp = np.arange(20000) / 20000.0  # 0 .. 0.99995, distinct
    gen = np.array([0.99999, 0.9999, 0.5, 0.99991])
    c = cal.calibrate_scores(gen, imp, 1e-4)
    # 2 false matches allowed -> threshold just above the 3rd highest (0.99985), rounded up
    assert c.threshold == pytest.approx(0.9999)
    assert c.false_matches == 2  # 0.9999 and 0.99995
    assert c.fmr == pytest.approx(1e-4)
    assert c.fmr_ci95 == pytest.approx(metrics.clopper_pearson(2, 20000))
    assert c.fmr_ci95[1] > 1e-4
    assert "upper bound" in c.note
    assert c.rule_of_three is None
    assert c.fnmr == pytest.approx(0.25)
    assert c.target_measurable


def test_calibrate_zero_false_matches_gives_rule_of_three_and_not_measurable() -> None:
    rng = np.random.default_rng(1)
    imp = rng.uniform(-0.3, 0.3, 3000)
    gen = rng.uniform(0.5, 0.9, 50)
    c = cal.calibrate_scores(gen, imp, 1e-4)
    assert c.false_matches == 0
    assert c.threshold > imp.max()
    assert c.rule_of_three == pytest.approx(1e-3)
    assert not c.target_measurable
    assert "not measurable with 3000 impostor comparisons" in c.note
    assert "rule of 3" in c.describe()


def test_choose_margin_loses_at_most_budget() -> None:
    top = np.array([0.8] * 100)
    hit = np.ones(100, bool)
    margin = np.linspace(0.0, 0.99, 100)  # 0.00, 0.01, ...
    m, n = cal.choose_margin(top, hit, margin, threshold=0.5, max_loss=0.05)
    assert n == 100
    assert m == pytest.approx(0.05)  # the 5 margins below 0.05 are rejected
    assert int(np.sum(margin < m)) <= 5
    # below-threshold and wrong-person searches are not correct accepts
    m2, n2 = cal.choose_margin(
        np.array([0.3, 0.9]), np.array([True, False]), np.array([0.2, 0.2]), 0.5
    )
    assert (m2, n2) == (0.0, 0)


def test_pair_scores_and_leave_one_out() -> None:
    e = np.eye(4, dtype=np.float32)
    people = {"a": [e[0], e[0]], "b": [e[1]], "c": [e[2], (e[2] + e[3]) / np.sqrt(2)]}
    gen, imp = cal.pair_scores_from_vectors(people)
    assert sorted(gen.tolist()) == pytest.approx([1 / np.sqrt(2), 1.0])
    assert imp.size == 5 * 4 // 2 - 2
    top, hit, margin = cal.leave_one_out(people)
    assert top.size == 4  # b has no other image: not a mated search
    assert hit.all()
    assert margin.min() == pytest.approx(1 / np.sqrt(2))


CONFIG = """# gate config
[site]
id = "s1"  # site

[face]
enabled = true
match_threshold = 0.40   # calibrated 2026-01-01
flip_fusion = false

[face.extra]
match_threshold = 0.1

[mqtt]
host = "x"
"""


def test_write_face_thresholds_edits_only_those_values(tmp_path: Path) -> None:
    f = tmp_path / "gateway.toml"
    f.write_text(CONFIG)
    cal.write_face_thresholds(f, 0.36251, 0.03)
    text = f.read_text()
    data = tomllib.loads(text)
    assert data["face"]["match_threshold"] == pytest.approx(0.3625)
    assert data["face"]["match_margin"] == pytest.approx(0.03)
    assert data["face"]["extra"]["match_threshold"] == 0.1
    assert "match_threshold = 0.3625   # calibrated 2026-01-01\n" in text
    # every other line is unchanged, the new key sits at the end of [face]
    expected = CONFIG.replace("0.40   #", "0.3625   #").replace(
        "flip_fusion = false\n", "flip_fusion = false\nmatch_margin = 0.0300\n"
    )
    assert text == expected


def test_write_face_thresholds_adds_missing_table(tmp_path: Path) -> None:
    f = tmp_path / "gateway.toml"
    f.write_text('[site]\nid = "s1"')
    cal.write_face_thresholds(f, 0.5, None)
    data = tomllib.loads(f.read_text())
    assert data == {"site": {"id": "s1"}, "face": {"match_threshold": 0.5}}


def test_write_face_thresholds_refuses_what_it_cannot_edit(tmp_path: Path) -> None:
    f = tmp_path / "gateway.toml"
    original = "face = { match_threshold = 0.4 }\n"
    f.write_text(original)
    with pytest.raises(ConfigError):
        cal.write_face_thresholds(f, 0.5, 0.02)
    assert f.read_text() == original
    f.write_text("[face\n")
    with pytest.raises(ConfigError, match="cannot read as TOML"):
        cal.write_face_thresholds(f, 0.5, 0.02)
