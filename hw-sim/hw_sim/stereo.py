"""A simulated stereo rig: the second view of a scene, rendered from the same 3-D head model.

The rig is rectified (the second camera ``baseline_mm`` to the right of the first, same
focal length, no distortion: :func:`gateway.face.calibration.ideal_pair` describes it). A
head's distance comes from its eye distance in pixels (adult mean 63 mm): a point at that
depth moves ``focal * baseline / depth`` pixels to the left in the second view, and a point
of the head's relief ``z`` pixels nearer moves ``baseline / depth * z`` pixels further (the
head model's depth field is in pixels of the frame, as its image is). A printed photo or a
screen is one plane: all of it moves by the same disparity; a bent photo (:func:`bend`)
is a cylinder round a vertical axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

MEAN_IOD_MM = 63.0


@dataclass(frozen=True)
class StereoView:
    """The second camera of a rectified rig."""

    baseline_mm: float = 60.0
    focal_px: float = 560.0

    def depth_mm(self, iod_px: float) -> float:
        """Distance of a face whose eyes are ``iod_px`` apart in the first view."""
        return self.focal_px * MEAN_IOD_MM / max(iod_px, 1.0)

    def disparity(self, iod_px: float) -> float:
        """Leftward shift (px) in the second view of a point at the face's depth."""
        return self.focal_px * self.baseline_mm / self.depth_mm(iod_px)

    def parallax(self, iod_px: float) -> float:
        """Extra leftward shift per pixel of relief towards the camera."""
        return self.baseline_mm / self.depth_mm(iod_px)


#: a bent photo's radius, in widths of the print: tightly bent, the sides pulled well back
BEND_RADIUS = 0.6


def bend(img: npt.NDArray[np.uint8], parallax: float = 0.0) -> npt.NDArray[np.uint8]:
    """A print bent round a vertical axis through its middle, seen from the front.

    Its columns are foreshortened (arc ``s`` lands at ``R sin(s/R)``) and, in a second view,
    move left by ``parallax * z`` with ``z = R cos(s/R) - R`` (the sides further away than the
    middle, which stands where the flat print would).
    """
    h, w = img.shape[:2]
    radius = BEND_RADIUS * w
    s = np.arange(w, dtype=np.float64) - (w - 1) / 2
    x = radius * np.sin(s / radius) - parallax * (radius * np.cos(s / radius) - radius)
    src = np.interp(s, x, s) + (w - 1) / 2
    map_x = np.broadcast_to(src.astype(np.float32), (h, w)).copy()
    map_y = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w)).copy()
    out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(out, np.uint8)
