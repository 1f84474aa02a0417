"""What the camera-pair checks share (the 3-D check, :mod:`gateway.face.stereo_check`, and the
near-infrared one, :mod:`gateway.face.nir_check`): the verdict with its cost, and the face's
5 detector landmarks with its eye distance, read before any work (pure: numpy only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import numpy as np

#: the reason of "no verdict" for a face too far away to measure (its depth too coarse)
TOO_FAR = "face_too_small"


class Measured(Protocol):
    """A check's measurement: whether it looks like a live face."""

    @property
    def ok(self) -> bool: ...


M = TypeVar("M", bound=Measured)


@dataclass(frozen=True)
class CheckVerdict(Generic[M]):
    """The measurement (None when no verdict: ``reason`` says why) and the check's cost."""

    measured: M | None
    reason: str | None
    ms: float

    @property
    def live(self) -> bool | None:
        """True/False for the fusion; None when the check could not measure."""
        return None if self.measured is None else self.measured.ok


def five_points(five: np.ndarray) -> tuple[np.ndarray, float]:
    """The detector's 5 landmarks as (5, 2) float64 and the eye distance in pixels."""
    pts = np.asarray(five, np.float64).reshape(5, 2)
    return pts, float(np.linalg.norm(pts[1] - pts[0]))


def since_ms(t0: float) -> float:
    """Milliseconds since ``t0`` (``time.perf_counter``)."""
    return (time.perf_counter() - t0) * 1e3
