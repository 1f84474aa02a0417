"""Synthetic 3-D landmark sets for the relief check: a face, a flat photo, bent photos.

Only the landmarks the check reads are placed (the rest stay at the face's centre). Positions
are anthropometric, in millimetres, face frame: x to the image right, y down, z towards the
camera; a surface function gives each point's depth.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gateway.face import relief

#: (x, y) of the used landmarks on an adult face, mm from the nose bridge at eye height
XY = {
    relief.NOSE_TIP: (0.0, 38.0),
    relief.NASION: (0.0, 0.0),
    relief.CHIN: (0.0, 115.0),
    33: (-46.0, 2.0),
    133: (-16.0, 2.0),
    263: (46.0, 2.0),
    362: (16.0, 2.0),
    61: (-25.0, 72.0),
    291: (25.0, 72.0),
    50: (-38.0, 40.0),
    205: (-35.0, 52.0),
    123: (-45.0, 30.0),
    280: (38.0, 40.0),
    425: (35.0, 52.0),
    352: (45.0, 30.0),
    234: (-70.0, 30.0),
    93: (-68.0, 45.0),
    127: (-70.0, 15.0),
    454: (70.0, 30.0),
    323: (68.0, 45.0),
    356: (70.0, 15.0),
}

Surface = Callable[[float, float], float]


def face_surface(x: float, y: float) -> float:
    """Depth of a face: an ellipsoid head with a nose (mm, towards the camera)."""
    head = 95.0 * np.sqrt(max(0.0, 1 - (x / 78.0) ** 2 - ((y - 45) / 120.0) ** 2))
    nose = 22.0 * np.exp(-(x**2) / (2 * 9.0**2) - (y - 36) ** 2 / (2 * 16.0**2))
    return float(head + nose)


def flat(x: float, y: float) -> float:
    """A photo held flat."""
    return 0.0


def bent_vertical_axis(radius: float = 70.0) -> Surface:
    """A photo bent round a vertical axis (the sides pulled back)."""
    return lambda x, y: float(np.sqrt(max(0.0, radius**2 - x**2)))


def bent_horizontal_axis(radius: float = 80.0) -> Surface:
    """A photo bent round a horizontal axis (top and bottom pulled back)."""
    return lambda x, y: float(np.sqrt(max(0.0, radius**2 - (y - 45) ** 2)))


def landmarks(
    surface: Surface,
    *,
    distance_mm: float = 600.0,
    yaw_deg: float = 0.0,
    pitch_deg: float = 0.0,
    scale: float = 1.0,
) -> np.ndarray:
    """(468, 3) points in the camera frame (z forward, mm): the face at ``distance_mm``."""
    pts = np.zeros((468, 3))
    for i, (x, y) in XY.items():
        pts[i] = (x * scale, y * scale, surface(x, y) * scale)
    pts[[i for i in range(468) if i not in XY]] = pts[relief.NASION]
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rx = np.array(
        [[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]]
    )
    local = pts - pts[relief.NASION]
    # the face frame's z points at the camera: the camera frame's z points away from it
    cam = (ry @ rx @ (local * (1, 1, -1)).T).T
    return cam + np.array([0.0, -40.0, distance_mm])


def project(p: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Pixel points (n, 2) of 3-D points through a 3x4 projection."""
    hom = np.hstack([pts, np.ones((len(pts), 1))]) @ p.T
    return hom[:, :2] / hom[:, 2:3]
