"""The simulated RGB+NIR camera: materials in the NIR view, and the gateway's NIR check on
them (ground-truth landmarks: the check alone, no detector). Needs ``gateway`` (skips
without it); the astronaut fallback corpus is enough.
"""

from __future__ import annotations

import numpy as np
import pytest

from hw_sim.config import ConfigError, SimConfig
from hw_sim.corpus import FaceCorpus
from hw_sim.nir import NirView
from hw_sim.scenes import Actor, Scene

pytest.importorskip("gateway.face.nir_check", reason="the gateway package is not installed")
from gateway.face.calibration import ideal_pair
from gateway.face.nir_check import NirCheck

W, H = 640, 480
VIEW = NirView(25.0, 560.0)


def _verdicts(corpus: FaceCorpus, variant: str) -> list[str | None]:
    name = corpus.residents(1)[0]
    scene = Scene(W, H, corpus)
    actor = Actor(name, corpus.probe_index(name), variant, 0.0, approach_s=2.0, linger_s=30)
    scene.add(actor)
    check = NirCheck(ideal_pair(W, H, VIEW.focal_px, VIEW.baseline_mm))
    out: list[str | None] = []
    for t in (2.2, 3.0, 4.5):
        five = scene.landmarks(actor, t)
        x0, y0 = five.min(axis=0) - 20
        x1, y1 = five.max(axis=0) + 20
        box = (float(x0), float(y0), float(x1 - x0), float(y1 - y0))
        v = check.check(scene.render(t), scene.render(t, VIEW), box, five)
        out.append("live" if v.live else v.reason)
    return out


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ("live", "live"),
        ("photo", "nir_too_bright"),  # white paper; a smaller face: seems further away
        ("bent", "nir_too_bright"),
        ("curved", "nir_washed_out"),  # a print on a face-shaped surface is still paper
        ("replay", "nir_dark"),  # a screen emits no NIR
        ("tablet", "nir_dark"),
    ],
)
def test_skin_passes_the_nir_check_and_prints_and_screens_fail(
    corpus: FaceCorpus, variant: str, reason: str
) -> None:
    assert _verdicts(corpus, variant) == [reason] * 3


def test_a_screen_is_dark_and_paper_bright_in_the_nir_view(corpus: FaceCorpus) -> None:
    name = corpus.residents(1)[0]
    means = {}
    for variant in ("live", "photo", "tablet"):
        scene = Scene(W, H, corpus)
        actor = Actor(name, 0, variant, 0.0, approach_s=1.0, linger_s=30)
        scene.add(actor)
        five = scene.landmarks(actor, 2.0)
        x, y = five[2] - (VIEW.disparity(float(np.hypot(*(five[1] - five[0])))), 0)
        nir = scene.render(2.0, VIEW)
        assert (nir[..., 0] == nir[..., 2]).all()  # one channel: a NIR sensor
        means[variant] = float(nir[int(y) - 5 : int(y) + 5, int(x) - 5 : int(x) + 5].mean())
    assert means["tablet"] < 20 < means["live"] < means["photo"]


def test_a_camera_is_stereo_or_rgb_nir_not_both() -> None:
    cams = [{"name": "c", "stereo_baseline_mm": 60, "nir_baseline_mm": 25}]
    with pytest.raises((ConfigError, ValueError), match="not both"):
        SimConfig.demo(cameras=cams, doors=[])
