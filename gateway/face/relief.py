"""The 3-D check of a face seen by a calibrated camera pair (pure: numpy only).

Dense landmarks found in both views are triangulated (linear DLT, as OpenCV's
``triangulatePoints``) and the resulting points must have the relief of a face, measured in a
frame attached to the face itself (so any head pose gives the same figures), in units of the
3-D distance between the eye centres (iod, ~63 mm on adults):

- **nose**: the nose tip lies ahead of the least-squares plane of the outer eye corners and
  the mouth corners by a physically plausible depth (adults: ~0.35-0.6 iod);
- **midline**: the nose tip lies ahead of the chord from the nasion to the chin (~0.3 iod).
  A photo bent round a vertical axis puts the nose ahead of the eye-mouth plane, but the whole
  midline of a cylinder is one straight line: it fails here;
- **cheeks**: the cheekbones lie ahead of the face outline at the same height (the curvature
  across the cheeks, ~0.3-0.6 iod). A photo bent round a horizontal axis is flat across: it
  fails here.

A flat photo or a screen fails all three. A print on a surface curved both ways like a face
(a mask) is outside what relief can tell apart: the hardest case, reported as such.
Landmark indices are MediaPipe Face Mesh's (468 points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

NOSE_TIP = 1
NASION = 168
CHIN = 152
EYE_OUTER = (33, 263)
EYE_INNER = (133, 362)
MOUTH = (61, 291)
#: cheekbone points and the face outline beside them, each side (image left, image right)
CHEEKS = ((50, 205, 123), (280, 425, 352))
OUTLINE = ((234, 93, 127), (454, 323, 356))
USED = sorted(
    {NOSE_TIP, NASION, CHIN, *EYE_OUTER, *EYE_INNER, *MOUTH, *sum(CHEEKS, ()), *sum(OUTLINE, ())}
)


@dataclass(frozen=True)
class ReliefSettings:
    """Plausible relief of a real face, in iod units (see the module docstring)."""

    nose_min: float = 0.25
    nose_max: float = 0.9
    midline_min: float = 0.12
    cheeks_min: float = 0.15
    #: the pair's triangulated eye distance must be a human one (mm): rejects mismatched views
    iod_mm: tuple[float, float] = (45.0, 85.0)


@dataclass(frozen=True)
class Relief:
    """The measured relief and the verdict; ``reason`` names the first failed measure."""

    nose: float
    midline: float
    cheeks: float
    iod_mm: float
    ok: bool
    reason: str | None = None


def triangulate(p1: Array, p2: Array, x1: Array, x2: Array) -> Array:
    """3-D points (n, 3) from pixel points ``x1``, ``x2`` (n, 2) of two 3x4 projections.

    The homogeneous linear (DLT) solution per point, as ``cv2.triangulatePoints``.
    """
    x1 = np.asarray(x1, np.float64)
    x2 = np.asarray(x2, np.float64)
    rows = np.stack(
        [
            x1[:, :1] * p1[2] - p1[0],
            x1[:, 1:2] * p1[2] - p1[1],
            x2[:, :1] * p2[2] - p2[0],
            x2[:, 1:2] * p2[2] - p2[1],
        ],
        axis=1,
    )  # (n, 4, 4)
    _, _, vt = np.linalg.svd(rows)
    hom = vt[:, -1, :]
    return np.asarray(hom[:, :3] / hom[:, 3:4], np.float64)


def _plane(points: Array, towards: Array) -> tuple[Array, Array]:
    """(centroid, unit normal) of the least-squares plane, the normal pointing at ``towards``."""
    centroid = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centroid)
    normal = vt[-1]
    if float(normal @ (towards - centroid)) < 0:
        normal = -normal
    return centroid, np.asarray(normal, np.float64)


def measure(points: Array, settings: ReliefSettings | None = None) -> Relief:
    """The relief of 468 triangulated landmarks (camera frame, mm; camera at the origin)."""
    s = settings or ReliefSettings()
    pts = np.asarray(points, np.float64)
    if pts.shape != (468, 3) or not np.isfinite(pts[USED]).all():
        return Relief(0.0, 0.0, 0.0, 0.0, False, "no_points")
    eyes = [(pts[o] + pts[i]) / 2 for o, i in zip(EYE_OUTER, EYE_INNER, strict=True)]
    iod = float(np.linalg.norm(eyes[1] - eyes[0]))
    anchors = pts[[*EYE_OUTER, *MOUTH]]
    centroid, n = _plane(anchors, np.zeros(3))
    if iod <= 0:
        return Relief(0.0, 0.0, 0.0, iod, False, "no_points")

    # depth ahead of the plane, in iod, of every point at once (unused points stay NaN)
    depth = (pts - centroid) @ n / iod
    nose = float(depth[NOSE_TIP])
    top, chin = pts[NASION], pts[CHIN]
    axis = chin - top
    t = float((pts[NOSE_TIP] - top) @ axis / max(float(axis @ axis), 1e-9))
    on_chord = top + np.clip(t, 0.0, 1.0) * axis
    midline = nose - float((on_chord - centroid) @ n) / iod
    cheeks = float(
        np.mean(
            [
                depth[list(ch)].mean() - depth[list(ol)].mean()
                for ch, ol in zip(CHEEKS, OUTLINE, strict=True)
            ]
        )
    )
    reason = None
    if not s.iod_mm[0] <= iod <= s.iod_mm[1]:
        reason = "scale"
    elif not s.nose_min <= nose <= s.nose_max:
        reason = "nose"
    elif midline < s.midline_min:
        reason = "midline"
    elif cheeks < s.cheeks_min:
        reason = "cheeks"
    return Relief(nose, midline, cheeks, iod, reason is None, reason)
