"""The single-frame calibration's pure steps (benchmarks/eval_single_frame.py), on synthetic
scores: the bars never admit a calibration false accept, the door counts either path, the
liveness bar clears every attack frame."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from gateway.face.settings import MatchSettings

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "eval_single_frame.py"


@pytest.fixture(scope="module")
def esf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("eval_single_frame", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["eval_single_frame"] = mod
    spec.loader.exec_module(mod)
    return mod


def searches(esf: ModuleType, seed: int = 0) -> object:
    rng = np.random.default_rng(seed)
    n_wrong, n_mated = 3000, 800
    wrong_top = rng.normal(0.35, 0.04, n_wrong)
    mated_top = rng.normal(0.7, 0.08, n_mated)
    top = np.concatenate([wrong_top, mated_top])
    margin = np.concatenate([rng.uniform(0.0, 0.15, n_wrong), rng.uniform(0.1, 0.5, n_mated)])
    mated = np.concatenate([np.zeros(n_wrong, bool), np.ones(n_mated, bool)])
    person = rng.integers(0, 50, top.size)
    return esf.Searches(top, margin, mated.copy(), mated, person)


def test_bars_sit_above_every_calibration_false_accept(esf: ModuleType) -> None:
    s = searches(esf)
    s.top[0], s.margin[0] = 0.6, 0.3  # one impostor far out in the tail
    base = MatchSettings()
    score, margin, tail = esf.choose_bars(s, base)
    assert score >= base.threshold
    assert margin >= base.margin
    assert s.false_accepts(score - esf.GUARD, base.margin) == 0
    assert tail <= esf.BUDGET
    assert 0.0 < s.genuine_rate(score, margin) < 1.0


def test_the_door_counts_a_stranger_approach_once_by_either_path(esf: ModuleType) -> None:
    s = searches(esf)
    base = MatchSettings()
    groups = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    s.top[[0, 1]], s.margin[[0, 1]], s.person[[0, 1]] = 0.55, 0.2, 7  # fused (2 of 3)
    s.top[5], s.margin[5] = 0.9, 0.6  # one strong frame
    out = esf.door(s, groups, base, (0.8, 0.3))
    assert out["fusion_only"]["count"] == 1
    assert out["fusion_and_single_frame"]["count"] == 2
    assert out["fusion_and_single_frame"]["of"] == 3


def _approach(live_mod: ModuleType, name: str, variant: str, lives: list[float]) -> object:
    """One approach: a far frame the quality gate refuses, then one decidable frame per live
    probability (the subject matched with a clear lead)."""
    box = (300.0, 200.0, 80.0, 100.0)
    frames = [live_mod.Frame(0.0, False, None, -1.0, 0.0, False, box)]
    frames += [
        live_mod.Frame((i + 1) / 15, True, v, 0.8, 0.4, True, box) for i, v in enumerate(lives)
    ]
    return live_mod.Approach(name, 0, variant, frames, "calibration" if name == "a" else "held_out")


def test_liveness_bar_from_attack_frames_judged_on_first_decidable_frames(
    esf: ModuleType,
) -> None:
    live_mod = sys.modules["single_frame_live"]
    rng = np.random.default_rng(1)
    # "a" is in the calibration half, "e" in the held-out one
    attacks_cal = [float(x) for x in rng.uniform(0.0, 0.5, 200)] + [0.55]
    attacks_held = [float(x) for x in rng.uniform(0.0, 0.45, 200)]
    data = {
        "corpus": "synthetic",
        "residents": 2,
        "seeds": 1,
        "approaches": [
            _approach(live_mod, "a", "live", [0.7, 0.95, 0.97]),
            _approach(live_mod, "a", "photo", attacks_cal),
            _approach(live_mod, "e", "live", [0.7, 0.9, 0.97]),
            _approach(live_mod, "e", "replay", attacks_held),
        ],
    }
    out = esf.liveness_bar(
        data, threshold=0.5, score=0.58, margin=0.19, budget=esf.BUDGET, compared=0.85, default=0.85
    )
    assert out["chosen"] == pytest.approx(0.65)  # 0.55 attack + 0.1 guard
    assert out["held_out_attack_frames_clear"] is True
    frames = out["held_out_frames_at_or_above_bar"]
    assert frames["first decidable live frame >= bar"]["count"] == 1
    assert frames["first decidable live frame >= compared bar 0.85"]["count"] == 0
    assert frames["replay frames >= bar"]["count"] == 0
    door = out["held_out_door"]
    # the held-out resident: granted on the first decidable frame at the new bar only
    new, old = door["single_frame_bar_0.65"]["live"], door["single_frame_compared_bar_0.85"]["live"]
    assert new["granted_on_first_decidable_frame"]["count"] == 1
    assert old["granted_on_first_decidable_frame"]["count"] == 0
    assert door["fusion_only"]["live"]["frames_first_decidable_to_grant_median"] == 1.0
    assert door["single_frame_bar_0.65"]["replay"]["granted"]["count"] == 0


def test_liveness_bar_without_enough_attack_frames_stays_strict(esf: ModuleType) -> None:
    live_mod = sys.modules["single_frame_live"]
    data = {
        "corpus": "synthetic",
        "residents": 2,
        "seeds": 1,
        "approaches": [
            _approach(live_mod, "a", "live", [0.7, 0.95]),
            _approach(live_mod, "a", "photo", [0.2, 0.3]),  # too few for a tail estimate
            _approach(live_mod, "e", "live", [0.7, 0.9]),
        ],
    }
    out = esf.liveness_bar(
        data, threshold=0.5, score=0.58, margin=0.19, budget=esf.BUDGET, compared=0.85, default=0.85
    )
    assert out["chosen"] == pytest.approx(0.95)
    assert "0.95" in out["summary"]
    absent = esf.liveness_bar(
        {"error": "absent"},
        threshold=0.5,
        score=0.58,
        margin=0.19,
        budget=esf.BUDGET,
        compared=0.85,
        default=0.85,
    )
    assert absent["chosen"] is None
