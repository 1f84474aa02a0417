"""YuNet face detection (onnxruntime, or cv2.FaceDetectorYN) decoded like OpenCV does.

The frame is resized to fit the configured input (letterboxed: scaled keeping its aspect,
then padded right/bottom with zeros only up to the next multiple of 32, so a 4:3 frame in a
320x320 input runs at 320x256, not 320x320) or, with ``detector_input=None``, padded to a
multiple of 32 at its own size. Landmarks and boxes are mapped back to frame pixels, so
alignment and embedding use the full-resolution frame. The
three strides' outputs (cls, obj, bbox, kps) are decoded as in OpenCV's FaceDetectorYN:
score = sqrt(clip(cls) * clip(obj)), centre = (cell + d) * stride, size = exp(d) * stride,
landmarks = (cell + d) * stride; then score threshold and NMS. Results are in frame pixels.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from gateway.errors import ModelError
from gateway.face.settings import FaceSettings

log = logging.getLogger(__name__)

STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class Detection:
    """One detected face in frame coordinates."""

    box: tuple[float, float, float, float]  # x, y, w, h
    landmarks: np.ndarray  # 5x2: right eye, left eye, nose, right mouth, left mouth (image view)
    score: float


class Detector(Protocol):
    """Anything that finds faces in a BGR frame."""

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]: ...


def _pad32(v: int) -> int:
    return ((v - 1) // 32 + 1) * 32


def prepare(
    frame: np.ndarray, input_size: tuple[int, int] | None, letterbox: bool
) -> tuple[np.ndarray, float, float]:
    """(padded BGR input image, x scale, y scale) for a frame: input = frame * scale."""
    import cv2

    h, w = frame.shape[:2]
    if input_size is None:
        sx = sy = 1.0
        img = frame
        tw, th = _pad32(w), _pad32(h)
    else:
        tw, th = input_size
        if letterbox:
            sx = sy = min(tw / w, th / h)
        else:
            sx, sy = tw / w, th / h
        nw, nh = min(tw, round(w * sx)), min(th, round(h * sy))
        img = frame if (nw, nh) == (w, h) else cv2.resize(frame, (nw, nh))
        if letterbox:  # the padding beyond the content would only cost time
            tw, th = min(tw, _pad32(nw)), min(th, _pad32(nh))
    ih, iw = img.shape[:2]
    if (iw, ih) != (tw, th):
        img = cv2.copyMakeBorder(img, 0, th - ih, 0, tw - iw, cv2.BORDER_CONSTANT, value=0)
    return img, sx, sy


def decode(
    outputs: dict[str, np.ndarray],
    *,
    width: int,
    height: int,
    score_threshold: float,
    nms_threshold: float,
    top_k: int,
) -> np.ndarray:
    """Decode YuNet outputs into an Nx15 array (x, y, w, h, 10 landmark coords, score)."""
    import cv2

    rows: list[np.ndarray] = []
    for stride in STRIDES:
        cols, nrows = width // stride, height // stride
        cls = np.clip(outputs[f"cls_{stride}"].reshape(-1), 0.0, 1.0)
        obj = np.clip(outputs[f"obj_{stride}"].reshape(-1), 0.0, 1.0)
        score = np.sqrt(cls * obj)
        keep = np.nonzero(score >= score_threshold)[0]
        if keep.size == 0:
            continue
        bbox = outputs[f"bbox_{stride}"].reshape(-1, 4)[keep]
        kps = outputs[f"kps_{stride}"].reshape(-1, 10)[keep]
        c = (keep % cols).astype(np.float32)
        r = (keep // cols).astype(np.float32)
        if keep.max() >= cols * nrows:
            raise ModelError(f"YuNet stride {stride} output does not match input {width}x{height}")
        cx = (c + bbox[:, 0]) * stride
        cy = (r + bbox[:, 1]) * stride
        bw = np.exp(bbox[:, 2]) * stride
        bh = np.exp(bbox[:, 3]) * stride
        lm = np.empty((keep.size, 10), np.float32)
        lm[:, 0::2] = (kps[:, 0::2] + c[:, None]) * stride
        lm[:, 1::2] = (kps[:, 1::2] + r[:, None]) * stride
        rows.append(
            np.column_stack([cx - bw / 2, cy - bh / 2, bw, bh, lm, score[keep]]).astype(np.float32)
        )
    if not rows:
        return np.zeros((0, 15), np.float32)
    faces = np.concatenate(rows)
    if len(faces) > 1:
        idx = cv2.dnn.NMSBoxes(
            faces[:, :4].astype(np.int32).tolist(),
            faces[:, 14].tolist(),
            score_threshold,
            nms_threshold,
            top_k=top_k,
        )
        faces = faces[np.asarray(idx, dtype=np.int64).reshape(-1)]
    return faces


def to_detections(
    faces: np.ndarray, sx: float, sy: float, frame_shape: tuple[int, ...]
) -> list[Detection]:
    """Scale input-space rows back to the frame; drop boxes wholly outside it."""
    h, w = frame_shape[:2]
    out = []
    for f in faces:
        x, y, bw, bh = f[0] / sx, f[1] / sy, f[2] / sx, f[3] / sy
        if x >= w or y >= h or x + bw <= 0 or y + bh <= 0:
            continue
        lm = f[4:14].reshape(5, 2).astype(np.float32) / np.array([sx, sy], np.float32)
        out.append(Detection((float(x), float(y), float(bw), float(bh)), lm, float(f[14])))
    return out


class OrtYuNet:
    """YuNet run by onnxruntime."""

    def __init__(self, model_path: Path, settings: FaceSettings) -> None:
        """Load the fp32 YuNet; ModelError naming the file when it cannot be loaded."""
        from gateway.face.runtime import ort_session

        self.session = ort_session(model_path, settings.providers, settings.threads)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.settings = settings

    def raw(self, img: np.ndarray) -> np.ndarray:
        """Nx15 decoded faces of an input-size image (H, W multiples of 32)."""
        blob = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)
        outs = self.session.run(self.output_names, {self.input_name: blob})
        named = dict(zip(self.output_names, outs, strict=True))
        return decode(
            named,
            width=img.shape[1],
            height=img.shape[0],
            score_threshold=self.settings.score_threshold,
            nms_threshold=self.settings.nms_threshold,
            top_k=self.settings.top_k,
        )

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """Faces in a validated BGR frame, best score first."""
        img, sx, sy = prepare(frame_bgr, self.settings.detector_input, self.settings.letterbox)
        return to_detections(self.raw(img), sx, sy, frame_bgr.shape)


class OpenCVYuNet:
    """YuNet run by ``cv2.FaceDetectorYN`` (the ``opencv`` backend)."""

    def __init__(self, model_path: Path, settings: FaceSettings) -> None:
        """Create the OpenCV detector; ModelError when OpenCV cannot load the file."""
        import cv2

        s = settings
        try:
            self.det = cv2.FaceDetectorYN.create(
                str(model_path), "", (320, 320), s.score_threshold, s.nms_threshold, s.top_k
            )
        except cv2.error as exc:
            raise ModelError(f"OpenCV cannot load {model_path}: {exc}") from exc
        self.settings = settings
        self._lock = threading.Lock()  # an OpenCV net is not safe from two threads at once

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """Faces in a validated BGR frame."""
        img, sx, sy = prepare(frame_bgr, self.settings.detector_input, self.settings.letterbox)
        if self.settings.detector_input is None:
            img = frame_bgr
        with self._lock:
            self.det.setInputSize((img.shape[1], img.shape[0]))
            _, faces = self.det.detect(img)
        if faces is None:
            return []
        return to_detections(np.asarray(faces, np.float32), sx, sy, frame_bgr.shape)
