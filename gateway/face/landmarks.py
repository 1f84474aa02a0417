"""Dense face landmarks: MediaPipe Face Mesh (468 points) on LiteRT, in frame pixels.

The model takes a 192x192 RGB crop (values 0..1) around the face and returns 468 (x, y, z)
points in crop pixels plus a face-presence logit. The crop is the one MediaPipe uses: a
square 1.5 times the face box, centred on it, rotated so that the eyes are level (from the
detector's 5 landmarks); the points are mapped back to the frame through the inverse of that
affine map. The model's z (a monocular depth guess) is dropped: only the 2-D positions are
used, and depth comes from triangulating two views (:mod:`gateway.face.relief`).

Runtime: LiteRT (``ai-edge-litert``, extra ``landmarks``) runs the pinned ``.tflite`` as
published; converting it to ONNX would need TensorFlow and tf2onnx at install time and a
converter whose output is not byte-stable across versions, so it could not be hash-pinned.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gateway.errors import ModelError
from gateway.face.landmark_models import landmark_path

log = logging.getLogger(__name__)

SIZE = 192
N_POINTS = 468
ROI_SCALE = 1.5


@dataclass(frozen=True)
class DenseLandmarks:
    """468 points (x, y) in frame pixels and the model's face-presence probability."""

    points: np.ndarray  # (468, 2) float64
    presence: float


def runtime_available() -> str | None:
    """None when LiteRT can be imported, else why not (for skips and doctor)."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    except ImportError as exc:
        return f"LiteRT is not installed (pip install 'access-gateway[landmarks]'): {exc}"
    return None


def crop_matrix(box: tuple[float, float, float, float], five: np.ndarray) -> np.ndarray:
    """The 2x3 map from frame pixels to the 192x192 model crop.

    ``five`` are the detector's landmarks (right eye, left eye, ... in image view): the crop
    is turned by the eye line's angle so that the eyes are level in it.
    """
    x, y, w, h = box
    pts = np.asarray(five, np.float64).reshape(5, 2)
    dx, dy = pts[1] - pts[0]
    angle = math.atan2(dy, dx)
    side = ROI_SCALE * max(w, h)
    cx, cy = x + w / 2, y + h / 2
    scale = SIZE / side
    cos, sin = math.cos(-angle) * scale, math.sin(-angle) * scale
    lin = np.array([[cos, -sin], [sin, cos]])
    shift = np.array([SIZE / 2, SIZE / 2]) - lin @ np.array([cx, cy])
    return np.hstack([lin, shift[:, None]])


class DenseLandmarker:
    """One LiteRT interpreter for the face mesh model (not thread-safe: one per worker)."""

    def __init__(self, model_path: Path, threads: int = 1) -> None:
        """Load the model; ModelError when LiteRT or the model cannot be used."""
        why = runtime_available()
        if why is not None:
            raise ModelError(why)
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._it: Any = Interpreter(model_path=str(model_path), num_threads=threads)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"LiteRT cannot load {model_path}: {exc}") from exc
        inp = self._it.get_input_details()
        outs = self._it.get_output_details()
        if len(inp) != 1 or tuple(inp[0]["shape"]) != (1, SIZE, SIZE, 3):
            raise ModelError(f"{model_path}: unexpected input {inp[0]['shape']}")
        by_size = {int(np.prod(o["shape"])): o["index"] for o in outs}
        if N_POINTS * 3 not in by_size or 1 not in by_size:
            raise ModelError(f"{model_path}: unexpected outputs")
        self._in = inp[0]["index"]
        self._pts = by_size[N_POINTS * 3]
        self._flag = by_size[1]

    @classmethod
    def load(cls, model_dir: Path, threads: int = 1) -> DenseLandmarker:
        """From the hash-checked model in ``model_dir``."""
        return cls(landmark_path(model_dir), threads)

    def run(
        self, frame_bgr: np.ndarray, box: tuple[float, float, float, float], five: np.ndarray
    ) -> DenseLandmarks:
        """The 468 landmarks of the face at ``box`` (with its 5 detector landmarks)."""
        import cv2

        m = crop_matrix(box, five)
        crop = cv2.warpAffine(
            frame_bgr, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        # RGB of the 192x192 crop only, scaled to 0..1 straight into the model's input buffer
        # (no float temporaries, no set_tensor copy); the view must be gone before invoke
        view = self._it.tensor(self._in)()
        np.divide(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), np.float32(255.0), out=view[0])
        del view
        self._it.invoke()
        raw = np.asarray(self._it.get_tensor(self._pts), np.float64).reshape(N_POINTS, 3)
        logit = float(np.asarray(self._it.get_tensor(self._flag)).reshape(-1)[0])
        inv = cv2.invertAffineTransform(m)
        pts = raw[:, :2] @ inv[:, :2].T + inv[:, 2]
        presence = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit))))
        return DenseLandmarks(pts, presence)
