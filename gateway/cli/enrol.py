"""``gateway enroll`` and ``gateway zones preview``: argument parsing and printing; office
enrolment is :mod:`gateway.services.enrolment`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from gateway.cli import context as ctx
from gateway.config.settings import face_settings
from gateway.errors import GatewayError
from gateway.privacy import zones
from gateway.privacy.enroll import EnrolmentError, SampleVerdict
from gateway.services import enrolment as svc

log = logging.getLogger(__name__)


def _progress_bar(i: int, n: int, name: str) -> None:
    width = 30
    filled = int(width * i / max(n, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {i}/{n} {name[:30]:30}")
    if i == n:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _verdict_table(verdicts: list[SampleVerdict]) -> None:
    w = max([5, *(len(v.source) for v in verdicts)])
    print(f"{'image':{w}}  verdict")
    for v in verdicts:
        print(f"{v.source:{w}}  {v.verdict}")


def _enroll(args: argparse.Namespace) -> int:
    db = ctx.open_db(args)
    vault = ctx.vault_of(args)
    grace = args.renotice_grace_days
    svc.check_may_enrol(db, args.person, grace_days=grace)  # before the models load
    cfg = ctx.config_of(args)
    model_dir = args.model_dir or (cfg.face.model_dir if cfg is not None else ctx.DEFAULT_MODEL_DIR)
    from gateway.face.settings import FaceSettings

    pipeline = svc.load_pipeline(model_dir, FaceSettings() if cfg is None else face_settings(cfg))
    request = svc.EnrolmentRequest(
        args.person, list(args.images), min_good=args.min_good, max_templates=args.max_templates
    )
    try:
        res = svc.enrol_from_images(
            db, vault, pipeline, request, actor=args.actor, grace_days=grace, progress=_progress_bar
        )
    except EnrolmentError as exc:
        _verdict_table(list(exc.verdicts))
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _verdict_table(list(res.verdicts))
    print(
        f"{res.stored} templates stored (encrypted), {res.rejected} images rejected; "
        "no image was stored"
    )
    return 0


def _zones_from_config(args: argparse.Namespace) -> tuple[str | None, list[Any]]:
    cfg_path = getattr(args, "config", None)
    if cfg_path is None or not Path(cfg_path).exists():
        return None, []
    from gateway.config.root import load_config

    cfg = load_config(cfg_path)
    cam = cfg.cameras.get(args.camera)
    if cam is None:
        raise GatewayError(f"camera {args.camera!r} is not in {cfg_path}")
    return cam.source, [z.polygon for z in cam.zones]


def _zones_preview(args: argparse.Namespace) -> int:
    import cv2

    cfg_source, cfg_polys = _zones_from_config(args)
    source = args.source or cfg_source
    # The camera's configured zones are always applied; --zones can only ADD zones to try.
    polys = list(cfg_polys)
    if args.zones is not None:
        raw = (
            json.loads(args.zones)
            if args.zones.lstrip().startswith("[")
            else json.loads(Path(args.zones).read_text(encoding="utf-8"))
        )
        polys += [z["polygon"] if isinstance(z, dict) else z for z in raw]
    if args.image is not None:
        from gateway.face.image import load_image

        frame = load_image(args.image)  # ImageError: header-checked, capped, regular files only
    elif source is not None:
        frame = zones.grab_frame(source)
    else:
        raise GatewayError(
            f"camera {args.camera}: give --source URL or --image FILE "
            "(or a config with this camera)"
        )
    out, blurred = zones.render_preview(frame, polys, _preview_detector(args))
    # The one image the gateway ever writes: on the installer's explicit request, locally,
    # 0600, with every configured no-capture zone blanked (Art. 13 installer aid).
    ok, png = cv2.imencode(".png", out)  # privacy-ok: zones preview, reviewed, see above
    if not ok:
        raise GatewayError(f"cannot encode the preview for {args.out}")
    # Created 0600 from the first byte (not chmod-ed after the fact).
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, png.tobytes())
    finally:
        os.close(fd)
    faces = (
        "no face detector: the whole frame is blurred (fail private)"
        if blurred is None
        else f"{blurred} face(s) outside the zones blurred"
    )
    print(f"camera {args.camera}: {len(polys)} zone(s) blanked and outlined; {faces} -> {args.out}")
    return 0


def _preview_detector(args: argparse.Namespace) -> Any:
    """The face detector for the preview's blurring, or None (then everything is blurred)."""
    from gateway.services.zones import preview_detector

    cfg = ctx.config_of(args)
    model_dir = args.model_dir or (cfg.face.model_dir if cfg is not None else ctx.DEFAULT_MODEL_DIR)
    return preview_detector(Path(model_dir))


def register(subparsers: ctx.Sub[argparse.ArgumentParser]) -> None:
    """Add ``gateway enroll`` and ``gateway zones``."""
    e = subparsers.add_parser("enroll", help="enrol a consenting person from images")
    e.add_argument("person")
    e.add_argument("--images", nargs="+", type=Path, required=True, help="DIR or FILES")
    e.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="installed models (default: face.model_dir of --config, else "
        f"{ctx.DEFAULT_MODEL_DIR})",
    )
    e.add_argument("--min-good", type=int, default=1)
    e.add_argument("--max-templates", type=int, default=10)
    ctx.common_options(e, keys=True)
    e.set_defaults(func=ctx.safe(_enroll))

    zp = subparsers.add_parser("zones", help="no-capture zones")
    zs = zp.add_subparsers(dest="zones_command", metavar="ACTION", required=True)
    pv = zs.add_parser("preview", help="write one frame with zones blanked and outlined")
    pv.add_argument("camera")
    pv.add_argument("--out", type=Path, required=True)
    pv.add_argument("--source", help="camera source URL/device (default: from --config)")
    pv.add_argument("--image", type=Path, help="use this image instead of the camera")
    pv.add_argument("--zones", help="JSON list of polygons (or of {name, polygon}), or a file")
    pv.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="face detector models, to blur passers-by (default: face.model_dir of --config, "
        f"else {ctx.DEFAULT_MODEL_DIR}); without them the whole frame is blurred",
    )
    pv.set_defaults(func=ctx.safe(_zones_preview))
