"""What the evaluation needs from a face pipeline: one embedding per image, or why not."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Embedding:
    """The embedding of the subject's face in one image (``vector`` None + ``reason`` if none)."""

    vector: Vector | None
    reason: str | None = None
    quality_ok: bool = True
    quality_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.vector is not None


class Embedder(Protocol):
    """One face embedding per image: the subject's face (the largest one found)."""

    name: str

    def embed(self, image_bgr: npt.NDArray[np.uint8]) -> Embedding: ...


def read_image(path: Path) -> npt.NDArray[np.uint8] | None:
    """BGR image from ``path``, None when it cannot be read or decoded."""
    import cv2

    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if img is None else np.asarray(img, dtype=np.uint8)


def normalise(vector: npt.ArrayLike) -> Vector:
    v = np.asarray(vector, dtype=np.float32).ravel()
    norm = float(np.linalg.norm(v))
    if norm == 0.0 or not np.isfinite(norm):
        raise ValueError("embedding has zero or non-finite norm")
    return (v / norm).astype(np.float32)


class EmbeddingCache:
    """Embeds each distinct file once per run (images are read from disk, never written)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._cache: dict[Path, Embedding] = {}

    def get(self, path: Path) -> Embedding:
        key = Path(path)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        img = read_image(key)
        if img is None:
            result = Embedding(None, "unreadable")
            log.warning("eval %s: cannot read image %s", self.embedder.name, key)
        else:
            result = self.embedder.embed(img)
        self._cache[key] = result
        return result

    def embed_all(self, paths: Iterable[Path]) -> dict[Path, Embedding]:
        return {Path(p): self.get(Path(p)) for p in paths}

    def __len__(self) -> int:
        return len(self._cache)


def cosine(a: Vector, b: Vector) -> float:
    return float(np.dot(a, b))
