"""What the evaluation needs from a face pipeline: one embedding per image, or why not."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]

#: Which detected face is the image's subject. ``centre``: the face whose box centre is
#: nearest the image centre, LFW's labelling convention (a deep-funneled image is centred on
#: its labelled person; a larger bystander can be in it). ``largest``: the biggest box, the
#: gate's rule (the person in front of the camera). The CLI defaults to ``centre`` (the
#: benchmarks it runs on are LFW-style); ``largest`` measures the gate's own choice.
FACE_RULES = ("centre", "largest")


def pick_face(boxes: Sequence[Sequence[float]], width: int, height: int, rule: str) -> int:
    """Index of the subject among face ``boxes`` (x, y, w, h) in a ``width`` x ``height``
    image, by ``rule`` (see :data:`FACE_RULES`); ties go to the first box."""
    if not boxes:
        raise ValueError("no face to pick from")
    if rule == "largest":
        areas = [float(b[2]) * float(b[3]) for b in boxes]
        return areas.index(max(areas))
    if rule == "centre":
        cx, cy = width / 2.0, height / 2.0
        dist = [
            (float(b[0]) + float(b[2]) / 2 - cx) ** 2 + (float(b[1]) + float(b[3]) / 2 - cy) ** 2
            for b in boxes
        ]
        return dist.index(min(dist))
    raise ValueError(f"unknown face rule {rule!r} (choose from {', '.join(FACE_RULES)})")


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
    """One face embedding per image: the subject's face (chosen by a rule of
    :data:`FACE_RULES`)."""

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
