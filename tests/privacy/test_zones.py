"""No-capture zones and camera placement rules."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest

from gateway.privacy.zones import (
    ZonedAnalyzer,
    ZoneError,
    ZoneMasker,
    apply_zones,
    build_mask,
    check_camera_allowed,
    render_preview,
    require_camera_allowed,
)

WINDOW = [(0.5, 0.0), (1.0, 0.0), (1.0, 0.5), (0.5, 0.5)]  # top-right quarter


class SpyDetector:
    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def analyze(self, frame_bgr: np.ndarray, **kwargs: Any) -> list[Any]:
        self.seen.append(frame_bgr.copy())
        return []


def test_masked_pixels_zero_before_detector() -> None:
    spy = SpyDetector()
    masker = ZoneMasker("gate-cam", [WINDOW])
    analyzer = ZonedAnalyzer(spy, masker)
    frame = np.full((480, 640, 3), 200, dtype=np.uint8)
    analyzer.analyze(frame, liveness=False)
    seen = spy.seen[0]
    assert np.all(seen[:240, 320:] == 0)
    assert np.all(seen[250:, :310] == 200)
    assert np.all(frame[:240, 320:] == 0)  # in place: no unmasked copy survives


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),  # a BGR frame
        lambda rng: rng.integers(0, 256, (480, 640), dtype=np.uint8),  # grey
        lambda rng: rng.integers(0, 256, (480, 1280, 3), dtype=np.uint8)[:, 640:],  # a view
        lambda rng: rng.random((480, 640, 3)).astype(np.float32),  # not uint8
    ],
)
def test_the_masker_blanks_exactly_the_zone_in_place(make: Any) -> None:
    """The fast path (a cached 0/1 multiplier) gives exactly what boolean indexing gives,
    in the caller's buffer, whatever the frame's layout; every frame again, not once."""
    rng = np.random.default_rng(7)
    masker = ZoneMasker("gate-cam", [WINDOW, [(0.0, 0.6), (0.2, 1.0), (0.0, 1.0)]])
    for _ in range(2):
        frame = make(rng)
        expected = frame.copy()
        expected[build_mask(masker.polygons, 640, 480)] = 0
        assert masker.apply(frame) is frame
        assert np.array_equal(frame, expected)
        assert frame[:240, 320:].max() == 0
    small = make(rng)[:120, :160]  # another size: its own mask and multiplier
    expected = small.copy()
    expected[build_mask(masker.polygons, 160, 120)] = 0
    masker.apply(small)
    assert np.array_equal(small, expected)


def test_mask_cached_per_size() -> None:
    masker = ZoneMasker("cam", [WINDOW])
    a = masker.mask_for(np.zeros((120, 160, 3), np.uint8))
    b = masker.mask_for(np.zeros((120, 160, 3), np.uint8))
    c = masker.mask_for(np.zeros((240, 320, 3), np.uint8))
    assert a is b
    assert c is not None
    assert c.shape == (240, 320)
    assert ZoneMasker("cam", []).mask_for(np.zeros((4, 4, 3), np.uint8)) is None


def test_apply_zones_polygons_and_errors() -> None:
    f = np.full((10, 10), 9, dtype=np.uint8)
    apply_zones(f, [WINDOW])
    assert f[0, 9] == 0
    assert f[9, 0] == 9
    with pytest.raises(ZoneError, match=r"outside 0\.\.1"):
        build_mask([[(0, 0), (2, 0), (0, 1)]], 10, 10)
    with pytest.raises(ZoneError, match="at least 3"):
        build_mask([[(0, 0), (1, 0)]], 10, 10)
    with pytest.raises(ZoneError, match="mask is"):
        apply_zones(f, np.zeros((5, 5), dtype=bool))


def test_private_camera_refused_naming_rule() -> None:
    problems = check_camera_allowed("private", True, "PIA-2025-01", dt.date(2025, 5, 1))
    assert len(problems) == 1
    assert "Art. 13" in problems[0]
    assert "private" in problems[0]
    with pytest.raises(ZoneError, match=r"camera bath: .*Art\. 13"):
        require_camera_allowed("bath", "private", True, "PIA", "2025-05-01")


def test_signage_and_assessment_required() -> None:
    assert check_camera_allowed("public", True, "PIA-1", dt.date(2025, 5, 1)) == []
    assert check_camera_allowed("semi_private", True, "PIA-1", "2025-05-01") == []
    p = check_camera_allowed("public", False, None, None)
    assert any("signage" in x and "Art. 13" in x for x in p)
    assert any("reference" in x and "Art. 9" in x for x in p)
    assert any("date" in x and "Art. 9" in x for x in p)
    assert check_camera_allowed("public", True, "PIA", "May 1st") == [
        "assessment date 'May 1st' is not YYYY-MM-DD"
    ]
    fut = check_camera_allowed(
        "public", True, "PIA", dt.date(2030, 1, 1), today=dt.date(2026, 1, 1)
    )
    assert "future" in fut[0]


def test_render_preview_outlines_and_blanks() -> None:
    frame = np.full((100, 200, 3), 200, dtype=np.uint8)
    out, _ = render_preview(frame, [WINDOW])
    assert np.all(frame == 200)  # original untouched
    assert np.all(out[10:40, 120:190] == 0)
    assert (out[:, :, 2] == 255).any()  # red outline drawn
