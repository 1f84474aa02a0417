"""The near-infrared check: the pure measure, and its driver on synthetic registered views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.errors import ConfigError
from gateway.face.calibration import ideal_pair
from gateway.face.nir import GRID, NirSettings, inner_face, measure, sample
from gateway.face.nir_check import NirCheck

RNG = np.random.default_rng(7)
VIS = RNG.uniform(60, 200, (GRID, GRID))


def _nir(reflectance: float, contrast: float, depth: float = 400.0) -> np.ndarray:
    """A NIR crop of ``reflectance`` keeping ``contrast`` of the colour crop's relative
    contrast, lit as at ``depth`` mm (white at 400 mm reads 255)."""
    light = (400.0 / depth) ** 2
    return 255.0 * reflectance * light * (1 - contrast + contrast * VIS / VIS.mean())


@pytest.mark.parametrize(
    ("nir", "depth", "reason"),
    [
        (_nir(0.5, 0.45), 400.0, None),  # skin
        (_nir(0.5, 0.45, depth=600.0), 600.0, None),  # further away: the fall-off is undone
        (_nir(0.03, 0.5), 400.0, "nir_dark"),  # a screen
        (_nir(0.85, 0.08), 400.0, "nir_washed_out"),  # white paper, inkjet ink
        (_nir(0.7, 0.45), 560.0, "nir_too_bright"),  # brighter than white at 560 mm
        (_nir(0.5, 0.08), 400.0, "nir_washed_out"),  # an inkjet print on grey paper
        (_nir(0.5, 1.8), 400.0, "nir_not_skin"),  # more contrast than skin shows in NIR
        (127.0 + RNG.normal(0, 20, (GRID, GRID)), 400.0, "nir_no_face"),  # not the face
    ],
)
def test_skin_passes_and_each_attack_fails_with_its_reason(
    nir: np.ndarray, depth: float, reason: str | None
) -> None:
    r = measure(nir, VIS, depth)
    assert r is not None
    assert (r.ok, r.reason) == (reason is None, reason)


def test_a_saturated_crop_gives_no_verdict() -> None:
    assert measure(np.full((GRID, GRID), 255.0), VIS, 400.0) is None
    assert measure(_nir(0.5, 0.45), VIS, 400.0, NirSettings(max_saturated=0.0)) is not None


def test_sample_clips_to_the_image() -> None:
    img = np.arange(100.0).reshape(10, 10)
    s = sample(img, (-5.0, -5.0, 20.0, 20.0))
    assert s.shape == (GRID, GRID)
    assert (s[0, 0], s[-1, -1]) == (0.0, 99.0)


FIVE = np.array([[290.0, 220], [350, 220], [320, 250], [298, 275], [342, 275]])
BOX = (260.0, 180.0, 120.0, 130.0)


def _views(nir_of: float, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """A textured colour face and its NIR view ``shift`` px to the left (a rectified rig)."""
    first = np.full((480, 640, 3), 90, np.uint8)
    tex = RNG.uniform(60, 200, (200, 200))
    first[150:350, 220:420] = tex[..., None].astype(np.uint8)
    second = np.full((480, 640, 3), 10, np.uint8)
    nir = nir_of * (0.55 + 0.45 * tex / tex.mean())
    x0 = 220 - round(shift)
    second[150:350, x0 : x0 + 200] = nir.clip(0, 255)[..., None].astype(np.uint8)
    return first, second


def test_the_driver_finds_the_face_at_the_registered_place() -> None:
    cal = ideal_pair(640, 480, 560.0, 25.0)
    check = NirCheck(cal)
    depth = 560.0 * 63.0 / 60.0  # eye distance 60 px
    disparity = 560.0 * 25.0 / depth
    skin = 255 * 0.5 * (400.0 / depth) ** 2
    v = check.check(*_views(skin, disparity), BOX, FIVE)
    assert (v.live, v.reason) == (True, None)
    v = check.check(*_views(skin * 0.08, disparity), BOX, FIVE)  # a screen
    assert (v.live, v.reason) == (False, "nir_dark")
    v = check.check(*_views(skin, disparity), BOX, FIVE * (0.4, 1.0))
    assert (v.live, v.reason) == (None, "face_too_small")
    assert inner_face(FIVE)[0] < FIVE[0, 0]


def test_the_calibration_must_agree_with_the_configured_baseline(tmp_path: Path) -> None:
    path = tmp_path / "nir.json"
    path.write_text(ideal_pair(640, 480, 560.0, 25.0).to_json(), encoding="utf-8")
    assert NirCheck.load(path, 26.0).cal.baseline_mm == pytest.approx(25.0)
    with pytest.raises(ConfigError, match=r"says 25\.0 mm"):
        NirCheck.load(path, 40.0)
