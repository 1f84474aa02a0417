"""A simulated near-infrared camera (850 nm, its own IR illuminator) beside the colour one.

The NIR view is rendered from the same scene as the colour view, a ``baseline_mm`` to the
right (as :class:`hw_sim.stereo.StereoView`), with each material's NIR reflectance lit by
the illuminator, whose light falls off with the square of the distance (a white target at
``white_at_mm`` reads 255):

- **skin** ~0.5 whatever its colour; smoother than in colour (light scatters under the
  skin): the face's features keep ~45 % of their relative contrast;
- **paper** ~0.85; inkjet dyes are nearly transparent in NIR, so a print keeps ~8 % of its
  contrast (it washes out to white paper);
- a **screen** (phone, tablet) emits no NIR; its glass reflects ~3 %; the bezel ~5 %;
- the **background** is far from the illuminator: dim.

These reflectances are textbook approximations, not measurements of a real module: the
figures from this simulator show the check's logic, not its real-world margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hw_sim.stereo import StereoView

Image = npt.NDArray[np.uint8]

SKIN = 0.5
SKIN_CONTRAST = 0.45
PAPER = 0.85
INK_CONTRAST = 0.08
SCREEN = 0.03
BACKGROUND = 0.12


@dataclass(frozen=True)
class NirView(StereoView):
    """The NIR camera of an RGB+NIR pair (rectified, beside the colour camera)."""

    white_at_mm: float = 400.0

    def light(self, iod_px: float) -> float:
        """Illuminance at a face whose eyes are ``iod_px`` apart (1 at ``white_at_mm``)."""
        return float((self.white_at_mm / self.depth_mm(iod_px)) ** 2)


def _gray(img: Image) -> npt.NDArray[np.float32]:
    return np.asarray(img[..., :3] @ np.array([0.114, 0.587, 0.299], np.float32), np.float32)


def _out(value: npt.NDArray[np.float32]) -> Image:
    g = np.asarray(value.clip(0, 255), np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def _textured(img: Image, reflectance: float, contrast: float, light: float) -> Image:
    g = _gray(img)
    mean = max(float(g.mean()), 1.0)
    return _out(255.0 * reflectance * light * (1.0 - contrast + contrast * g / mean))


def skin(img: Image, light: float) -> Image:
    """A live face's crop as the NIR camera sees it."""
    return _textured(img, SKIN, SKIN_CONTRAST, light)


def paper(img: Image, light: float) -> Image:
    """A print (inkjet on paper) as the NIR camera sees it: washed out to the paper."""
    return _textured(img, PAPER, INK_CONTRAST, light)


def screen(img: Image, light: float) -> Image:
    """A phone or tablet (screen and bezel) as the NIR camera sees it: dark."""
    g = _gray(img)
    return _out(255.0 * light * (SCREEN + 0.02 * g / 255.0))


def background(img: Image) -> Image:
    """The scene behind the gate, far from the illuminator."""
    return _out(_gray(img) * BACKGROUND * 2.0)
