"""The near-infrared check of an ``rgb+nir`` pair (pure: numpy only).

A near-infrared camera with its own IR illuminator (850 nm) sits beside the colour camera.
The face found in the colour view is looked for at the matching place in the NIR view (the
pair's calibration moves it there, :func:`gateway.face.stereo_pair.predict_second_view`), on
the inner face (eyes to mouth), and must show skin's response:

- **level**: the median NIR brightness, corrected for the illuminator's fall-off with the
  square of the face's distance (from its eye distance), as a reflectance estimate: skin
  reflects ~0.4-0.6 of 850 nm light whatever its colour; a phone or tablet screen emits no
  NIR and its glass reflects a few per cent (dark); above a white target's level is not skin
  (white paper, ~0.85, is too close to skin for the rough distance: contrast refuses it).
  Assumption (a pair setting to calibrate on site): a white target at ``white_at_mm``
  reads full scale (255).
- **presence**: the NIR crop correlates with the colour crop's brightness (the same eyes,
  brows and mouth at the same place): a face is there, registered.
- **contrast**: the NIR crop's contrast relative to the colour crop's: skin in NIR is
  smoother than in colour (light scatters under the skin) but keeps its features; an inkjet
  print's dyes are nearly transparent in NIR, so a print washes out to white paper.

A laser (toner) print absorbs NIR like visible light: its contrast is not washed out, and on
grey-toned paper its level can fall in skin's range: this check alone cannot refuse it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
#: side of the square grid both crops are sampled on
GRID = 24


@dataclass(frozen=True)
class NirSettings:
    """Thresholds of the NIR check (reflectance units; ratios)."""

    skin_min: float = 0.28
    #: brighter than a white target: not skin. Paper (~0.85) is not refused by level: the
    #: distance from the eye distance is too rough (adults' eye distances, the head's turn,
    #: a print's face size: +-30 % in the estimate), the washed-out contrast refuses it
    skin_max: float = 1.0
    min_correlation: float = 0.5
    contrast_min: float = 0.25
    contrast_max: float = 1.6
    white_at_mm: float = 400.0
    #: more than this share of saturated (255) pixels: no verdict (too close, too bright)
    max_saturated: float = 0.2


@dataclass(frozen=True)
class NirResponse:
    """What the NIR view shows at the face: ``reason`` names the first failed rule."""

    reflectance: float
    correlation: float
    contrast: float
    ok: bool
    reason: str | None


def inner_face(five: Array) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the inner face (brows to below the mouth) from 5 landmarks."""
    pts = np.asarray(five, np.float64).reshape(5, 2)
    iod = float(np.linalg.norm(pts[1] - pts[0]))
    x0 = float(min(pts[0, 0], pts[3, 0])) - 0.35 * iod
    x1 = float(max(pts[1, 0], pts[4, 0])) + 0.35 * iod
    y0 = float(min(pts[0, 1], pts[1, 1])) - 0.35 * iod
    y1 = float(max(pts[3, 1], pts[4, 1])) + 0.15 * iod
    return x0, y0, x1, y1


def sample(img: npt.NDArray[np.generic], rect: tuple[float, float, float, float]) -> Array:
    """The ``GRID`` x ``GRID`` nearest-pixel samples of an image inside ``rect`` (clipped to
    the image; a colour image keeps its channels)."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = rect
    xs = np.clip(np.linspace(x0, x1, GRID), 0, w - 1).round().astype(np.int64)
    ys = np.clip(np.linspace(y0, y1, GRID), 0, h - 1).round().astype(np.int64)
    return np.asarray(img[np.ix_(ys, xs)], np.float64)


def _relative_contrast(nir: Array, vis: Array) -> float:
    cn = float(nir.std() / max(nir.mean(), 1.0))
    cv = float(vis.std() / max(vis.mean(), 1.0))
    return cn / max(cv, 1e-3)


def measure(
    nir: Array, vis: Array, depth_mm: float, settings: NirSettings | None = None
) -> NirResponse | None:
    """The response of the inner face sampled in both views (``sample``), at ``depth_mm``.

    None when the NIR crop is mostly saturated (no verdict)."""
    s = settings or NirSettings()
    if float(np.mean(nir >= 254.5)) > s.max_saturated:
        return None
    reflectance = float(np.median(nir)) / 255.0 * (depth_mm / s.white_at_mm) ** 2
    a, b = nir - nir.mean(), vis - vis.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    correlation = float((a * b).sum()) / denom if denom > 0 else 0.0
    contrast = _relative_contrast(nir, vis)
    reason: str | None = None
    if reflectance < s.skin_min:
        reason = "nir_dark"
    elif reflectance > s.skin_max:
        reason = "nir_too_bright"
    elif correlation < s.min_correlation:
        reason = "nir_no_face"
    elif contrast < s.contrast_min:
        reason = "nir_washed_out"
    elif contrast > s.contrast_max:
        reason = "nir_not_skin"
    return NirResponse(reflectance, correlation, contrast, reason is None, reason)
