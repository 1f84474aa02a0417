"""SFace embeddings: 128-d, L2-normalised, batched, optional horizontal-flip fusion."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from gateway.errors import ModelError

DIM = 128


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); a zero row stays zero."""
    x = np.asarray(x, np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    out: np.ndarray = (x / np.maximum(n, 1e-12)).astype(np.float32)
    return out


class Embedder(Protocol):
    """Anything that turns aligned 112x112 BGR crops into unit embeddings."""

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray: ...


def _blob(crops: Sequence[np.ndarray], flip: bool) -> np.ndarray:
    arr = np.stack([np.asarray(c) for c in crops])
    if arr.shape[1:] != (112, 112, 3):
        raise ValueError(f"aligned crops must be 112x112x3, got {arr.shape[1:]}")
    if flip:
        arr = np.concatenate([arr, arr[:, :, ::-1]])
    # BGR -> RGB, NCHW, 0..255 (the model normalises inside), as blobFromImage(swapRB=True).
    return np.ascontiguousarray(arr[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)


def _fuse(raw: np.ndarray, n: int, flip: bool) -> np.ndarray:
    if flip:
        raw = l2_normalise(raw[:n]) + l2_normalise(raw[n:])
    return l2_normalise(raw)


class OrtSFace:
    """SFace run by onnxruntime on a batch of aligned crops."""

    def __init__(
        self,
        model_path: Path,
        *,
        flip_fusion: bool = False,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        threads: int = 2,
    ) -> None:
        """Load the fp32 SFace; ModelError naming the file when it cannot be loaded."""
        from gateway.face.runtime import ort_session

        self.session = ort_session(model_path, providers, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.flip_fusion = flip_fusion

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Nx128 float32 unit embeddings of N aligned crops (one model run)."""
        if len(crops) == 0:
            return np.zeros((0, DIM), np.float32)
        blob = _blob(crops, self.flip_fusion)
        raw = self.session.run(None, {self.input_name: blob})[0].reshape(len(blob), -1)
        return _fuse(raw, len(crops), self.flip_fusion)


class OpenCVSFace:
    """SFace run by ``cv2.FaceRecognizerSF`` (the ``opencv`` backend, one crop at a time).

    An OpenCV net is not safe to run from two threads at once (the cameras' worker threads
    share the pipeline): calls are serialised by a lock."""

    def __init__(self, model_path: Path, *, flip_fusion: bool = False) -> None:
        """Create the OpenCV recognizer; ModelError when OpenCV cannot load the file."""
        import cv2

        try:
            self.rec = cv2.FaceRecognizerSF.create(str(model_path), "")
        except cv2.error as exc:
            raise ModelError(f"OpenCV cannot load {model_path}: {exc}") from exc
        self.flip_fusion = flip_fusion
        self._lock = threading.Lock()

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Nx128 float32 unit embeddings."""
        if len(crops) == 0:
            return np.zeros((0, DIM), np.float32)
        items = list(crops) + (
            [np.ascontiguousarray(c[:, ::-1]) for c in crops] if self.flip_fusion else []
        )
        with self._lock:
            feats = [np.asarray(self.rec.feature(c), np.float32).reshape(1, -1) for c in items]
        raw = np.concatenate(feats)
        return _fuse(raw, len(crops), self.flip_fusion)
