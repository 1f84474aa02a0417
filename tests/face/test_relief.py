"""The 3-D relief check on synthetic landmark sets: a face passes, photos flat or bent fail."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.errors import ConfigError
from gateway.face import relief
from gateway.face.calibration import (
    StereoCalibration,
    ideal_pair,
    load_calibration,
    parse_calibration,
)
from tests.face import synthetic_faces as sf


def _through_pair(
    pts: np.ndarray, cal: StereoCalibration, noise_px: float = 0.0, seed: int = 0
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x1 = sf.project(cal.p1, pts) + rng.normal(0, noise_px, (len(pts), 2))
    x2 = sf.project(cal.p2, pts) + rng.normal(0, noise_px, (len(pts), 2))
    return relief.triangulate(cal.p1, cal.p2, x1, x2)


@pytest.mark.parametrize(("yaw", "pitch"), [(0, 0), (20, 0), (-20, 10), (8, -12)])
def test_a_face_passes_in_any_pose(yaw: float, pitch: float) -> None:
    r = relief.measure(sf.landmarks(sf.face_surface, yaw_deg=yaw, pitch_deg=pitch))
    assert r.ok, r
    assert 0.4 < r.nose < 0.7
    assert r.midline > 0.3
    assert r.cheeks > 0.3
    assert r.iod_mm == pytest.approx(62.0, abs=0.5)


def test_a_flat_photo_fails_on_the_nose() -> None:
    r = relief.measure(sf.landmarks(sf.flat, yaw_deg=15))
    assert not r.ok
    assert r.reason == "nose"
    assert abs(r.nose) < 1e-6
    assert abs(r.cheeks) < 1e-6


@pytest.mark.parametrize("radius", [55.0, 60.0, 70.0, 90.0])
def test_a_photo_bent_round_a_vertical_axis_fails(radius: float) -> None:
    r = relief.measure(sf.landmarks(sf.bent_vertical_axis(radius)))
    assert not r.ok
    assert r.reason in {"nose", "midline"}
    assert r.midline < relief.ReliefSettings().midline_min


def test_a_tightly_bent_photo_passes_the_nose_but_not_the_midline() -> None:
    r = relief.measure(sf.landmarks(sf.bent_vertical_axis(48.0)))
    assert r.nose >= relief.ReliefSettings().nose_min  # the plane alone would be fooled
    assert r.reason == "midline"


def test_a_photo_bent_round_a_horizontal_axis_fails_on_the_cheeks() -> None:
    r = relief.measure(sf.landmarks(sf.bent_horizontal_axis(60.0)))
    assert not r.ok
    assert abs(r.cheeks) < 0.02
    assert r.reason in {"nose", "midline", "cheeks"}


def test_a_doll_sized_or_giant_face_fails_on_scale() -> None:
    assert relief.measure(sf.landmarks(sf.face_surface, scale=0.5)).reason == "scale"
    assert relief.measure(sf.landmarks(sf.face_surface, scale=1.6)).reason == "scale"


def test_missing_or_non_finite_points_fail_closed() -> None:
    pts = sf.landmarks(sf.face_surface)
    pts[relief.NOSE_TIP] = np.nan
    assert relief.measure(pts).reason == "no_points"
    assert relief.measure(np.zeros((5, 3))).reason == "no_points"


def test_triangulation_matches_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    r, _ = cv2.Rodrigues(np.array([0.02, -0.05, 0.01]))
    cal = StereoCalibration(
        (640, 480),
        np.array([[610.0, 0, 318], [0, 605, 242], [0, 0, 1]]),
        np.zeros(5),
        np.array([[590.0, 0, 325], [0, 592, 236], [0, 0, 1]]),
        np.zeros(5),
        r,
        np.array([-62.0, 1.5, 2.0]),
    )
    pts = sf.landmarks(sf.face_surface, yaw_deg=10)
    x1, x2 = sf.project(cal.p1, pts), sf.project(cal.p2, pts)
    ours = relief.triangulate(cal.p1, cal.p2, x1, x2)
    hom = cv2.triangulatePoints(cal.p1, cal.p2, x1.T, x2.T)
    theirs = (hom[:3] / hom[3]).T
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    np.testing.assert_allclose(ours, pts, atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_through_a_60mm_pair_with_landmark_noise(seed: int) -> None:
    cal = ideal_pair(640, 480, 560.0, 60.0)

    def seen(surface: sf.Surface) -> relief.Relief:
        return relief.measure(_through_pair(sf.landmarks(surface, distance_mm=450), cal, 0.3, seed))

    live = seen(sf.face_surface)
    assert live.ok, live
    assert not seen(sf.flat).ok
    assert not seen(sf.bent_vertical_axis(60)).ok
    assert not seen(sf.bent_horizontal_axis(60)).ok


def _pass_rate(surface: sf.Surface, noise: float, distance: float, n: int = 200) -> float:
    cal = ideal_pair(640, 480, 560.0, 60.0)
    pts = sf.landmarks(surface, distance_mm=distance)
    return sum(relief.measure(_through_pair(pts, cal, noise, s)).ok for s in range(n)) / n


def test_per_frame_rates_at_half_a_pixel_of_noise() -> None:
    """Per frame, 0.5 px of independent landmark noise per view, 60 mm baseline, 450 mm:
    measured face 1.0, flat 0.0, bent 0.075 / 0.015 (fusion over frames does the rest)."""
    assert _pass_rate(sf.face_surface, 0.5, 450) >= 0.99
    assert _pass_rate(sf.flat, 0.5, 450) <= 0.01
    assert _pass_rate(sf.bent_vertical_axis(60), 0.5, 450) <= 0.1
    assert _pass_rate(sf.bent_horizontal_axis(60), 0.5, 450) <= 0.05


def test_calibration_file_round_trip_and_errors(tmp_path) -> None:
    cal = ideal_pair(640, 480, 600.0, 60.0)
    path = tmp_path / "pair.json"
    path.write_text(cal.to_json())
    back = load_calibration(path)
    np.testing.assert_allclose(back.p2, cal.p2)
    assert back.baseline_mm == pytest.approx(60.0)
    with pytest.raises(ValueError, match="'R' is not a rotation"):
        parse_calibration(cal.to_json().replace('"R": [\n  [\n   1.0', '"R": [\n  [\n   2.0'))
    with pytest.raises(ValueError, match="'D1' is missing"):
        parse_calibration('{"image_size": [640, 480]}')
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not JSON"):
        load_calibration(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="baseline"):
        parse_calibration(ideal_pair(640, 480, 600.0, 2.0).to_json())
