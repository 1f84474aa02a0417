"""The face paths of a gate: models, the live gallery, one path per allowed face camera.

A failure here disables the face path only (an event says why); PIN and card are
unaffected. The face modules are imported only when a face path is built.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import access
from gateway.config.doors import DoorConfig
from gateway.config.root import GatewayConfig
from gateway.config.settings import face_settings, fusion_settings, match_settings
from gateway.daemon.supervisor import ServiceSpec
from gateway.errors import GatewayError, ModelError
from gateway.mqtt import events as ev

if TYPE_CHECKING:
    from gateway.face.gallery import Gallery
    from gateway.gate.facepath import FacePath
    from gateway.privacy.vault import Vault

log = logging.getLogger(__name__)

Emit = Callable[[ev.BaseEvent], None]
FaceSink = Callable[[str, access.FusionOutcome], Awaitable[None]]


@dataclass(frozen=True)
class FaceContext:
    """What building the face paths takes from the gate."""

    cfg: GatewayConfig
    db: Any
    run_db: Callable[..., Awaitable[Any]]
    emit: Emit
    add_service: Callable[[ServiceSpec], None]
    status: dict[str, str]  # camera -> face path status, shown in the gate's health
    vault: Vault
    gallery: Gallery


@dataclass
class FaceSetup:
    """What was built: the models, the running paths, whether the gallery is live."""

    pipeline: Any = None
    paths: dict[str, FacePath] = field(default_factory=dict)
    gallery_live: bool = False


async def build_face(
    ctx: FaceContext,
    engine: access.PolicyEngine,
    sink: FaceSink,
    on_faces: Callable[[str, int], None],
) -> FaceSetup:
    """Load models and the gallery, and create one face path per face camera."""
    cfg = ctx.cfg
    out = FaceSetup()
    face_cameras = {d.camera: name for name, d in cfg.doors.items() if d.uses_face and d.camera}
    if not cfg.face.enabled or not face_cameras:
        return out
    await _record_notice(ctx)
    try:
        out.pipeline = await asyncio.to_thread(
            _load_pipeline, cfg.face.model_dir, face_settings(cfg)
        )
    except (ModelError, GatewayError) as exc:
        log.error("gate %s: face path disabled, PIN and card unaffected: %s", cfg.site.gate, exc)
        for cam in face_cameras:
            _disable(
                ctx.emit,
                cfg,
                cam,
                status=ctx.status,
                why="model_error",
                reason=ev.FacePathReason.MODEL_ERROR,
            )
        return out
    if not out.pipeline.has_liveness:
        _drop_liveness_required(ctx, face_cameras)
    from gateway.privacy.consent import face_allowed
    from gateway.privacy.vault import load_gallery

    counts = await ctx.run_db(
        load_gallery,
        ctx.db,
        ctx.vault,
        ctx.gallery,
        allowed=face_allowed(ctx.db, grace_days=cfg.privacy.renotice_grace_days),
    )
    log.info("gate %s: gallery loaded: %s", cfg.site.gate, counts)
    for cam, door in face_cameras.items():
        if not camera_allowed(cfg, cam, ctx.status, ctx.emit):
            continue
        pair = cfg.doors[door].pair
        second = None if pair is None else pair.camera
        if second is not None and not camera_allowed(cfg, second, ctx.status, ctx.emit):
            continue
        try:
            out.paths[cam] = _build_face_path(
                ctx, cam, door, engine=engine, pipeline=out.pipeline, sink=sink, on_faces=on_faces
            )
        except GatewayError as exc:  # the pair's model or calibration: fail closed
            log.error("camera %s: face path disabled, PIN and card unaffected: %s", cam, exc)
            why, reason = "camera pair unusable", ev.FacePathReason.MODEL_ERROR
            _disable(ctx.emit, cfg, cam, status=ctx.status, why=why, reason=reason)
    out.gallery_live = True
    return out


def _drop_liveness_required(ctx: FaceContext, face_cameras: dict[str, str]) -> None:
    """Without an anti-spoofing model, no face path on a door that requires liveness."""
    cfg = ctx.cfg
    # a door with a stereo pair has its own liveness signal: the 3-D check
    blocked = [
        cam
        for cam, door in face_cameras.items()
        if cfg.doors[door].liveness is access.LivenessPolicy.REQUIRED
        and not _has_stereo(cfg.doors[door])
    ]
    for cam in blocked:
        del face_cameras[cam]
        why = "no anti-spoofing model"
        _disable(
            ctx.emit, cfg, cam, status=ctx.status, why=why, reason=ev.FacePathReason.MODEL_ERROR
        )
    if blocked:
        log.error(
            "gate %s: face path disabled on cameras %s, PIN and card unaffected: "
            "their doors require liveness and no anti-spoofing model is installed "
            "(gateway models install --antispoof DIR)",
            cfg.site.gate,
            ", ".join(blocked),
        )


def _has_stereo(door: DoorConfig) -> bool:
    return door.pair is not None and door.pair.kind == "stereo"


def _disable(
    emit: Emit,
    cfg: GatewayConfig,
    cam: str,
    *,
    status: dict[str, str],
    why: str,
    reason: ev.FacePathReason,
) -> None:
    status[cam] = f"disabled: {why}"
    emit(ev.FacePathDisabled(site=cfg.site.id, gate=cfg.site.gate, reason=reason, camera=cam))


def camera_allowed(cfg: GatewayConfig, cam: str, status: dict[str, str], emit: Emit) -> bool:
    """The Art. 9/13 rules again at runtime (config validation already enforces them):
    no face processing on a private-space camera, without signage, or without an impact
    assessment on record. No role can override it."""
    from gateway.privacy.zones import ZoneError, require_camera_allowed

    cc = cfg.cameras[cam]
    ia = cfg.privacy.impact_assessment
    try:
        require_camera_allowed(
            cam,
            cc.space.value,
            cc.signage_installed,
            ia.reference if ia else None,
            ia.date if ia else None,
        )
    except ZoneError as exc:
        log.error("camera %s: face processing refused: %s", cam, exc)
        private = cc.space.value == "private"
        reason = (
            ev.FacePathReason.PRIVATE_SPACE
            if private
            else ev.FacePathReason.IMPACT_ASSESSMENT_MISSING
        )
        why = "private_space" if private else "rules"
        _disable(emit, cfg, cam, status=status, why=why, reason=reason)
        return False
    return True


async def _record_notice(ctx: FaceContext) -> None:
    notice_file = ctx.cfg.privacy.notice_file
    if notice_file is None:
        return
    from gateway.privacy.consent import set_notice
    from gateway.privacy.notice import load_notice

    try:
        notice = load_notice(notice_file, ctx.cfg.privacy.notice_version)
        flagged = await ctx.run_db(set_notice, ctx.db, notice, actor="system:startup")
    except GatewayError as exc:
        log.error("gate %s: consent notice problem: %s", ctx.cfg.site.gate, exc)
        return
    if flagged:
        log.warning(
            "gate %s: notice version %s is new: %d people flagged for re-notice",
            ctx.cfg.site.gate,
            ctx.cfg.privacy.notice_version,
            flagged,
        )


def _camera_state(
    ctx: FaceContext, cam: str, loop: asyncio.AbstractEventLoop
) -> Callable[[bool, str], None]:
    """The capture thread's online/offline reports: the status, and events on the loop."""
    cfg = ctx.cfg

    def emit(event: ev.BaseEvent) -> None:
        loop.call_soon_threadsafe(ctx.emit, event)

    def on_state(online: bool, reason: str) -> None:
        ctx.status[cam] = "running" if online else f"disabled: camera {reason}"
        site, gate = cfg.site.id, cfg.site.gate
        if online:
            emit(ev.CameraOnline(site=site, gate=gate, camera=cam))
            emit(
                ev.FacePathEnabled(
                    site=site, gate=gate, camera=cam, reason=ev.FacePathReason.RECOVERED
                )
            )
        else:
            emit(
                ev.CameraOffline(site=site, gate=gate, camera=cam, reason=ev.DeviceReason.NO_FRAMES)
            )
            emit(
                ev.FacePathDisabled(
                    site=site,
                    gate=gate,
                    camera=cam,
                    reason=ev.FacePathReason.CAMERA_OFFLINE,
                )
            )

    return on_state


def _build_face_path(
    ctx: FaceContext,
    cam: str,
    door: str,
    *,
    engine: access.PolicyEngine,
    pipeline: Any,
    sink: FaceSink,
    on_faces: Callable[[str, int], None],
) -> FacePath:
    from gateway.gate.camera import CameraCapture, OpenCVSource
    from gateway.gate.facepath import FacePath
    from gateway.privacy.zones import ZoneMasker

    cfg = ctx.cfg
    cc = cfg.cameras[cam]
    if cc.inline_password:
        log.warning(
            "camera %s: its password is written inside 'source'; move it to "
            "cameras.%s.password (a file or systemd credential)",
            cam,
            cam,
        )
    loop = asyncio.get_running_loop()
    capture = CameraCapture(
        cam,
        lambda: OpenCVSource(cc.stream_url(), cc.width, cc.height),
        fps=cc.fps,
        on_state=_camera_state(ctx, cam, loop),
    )
    dc = cfg.doors[door]
    stereo = build_pair(ctx, dc, loop) if dc.pair is not None else None
    path = FacePath(
        camera=cam,
        door=door,
        reader=dc.reader,
        capture=capture,
        pipeline=pipeline,
        gallery=ctx.gallery,
        transform=ctx.vault.transform,
        masker=ZoneMasker(cam, [z.polygon for z in cc.zones]),
        engine=engine,
        tracker=access.ApproachTracker(fusion_settings(cfg, dc)),
        settings=match_settings(cfg),
        sink=sink,
        liveness_enabled=dc.liveness is not access.LivenessPolicy.OFF,
        consistency_k=cfg.face.consistency_frames,
        motion_veto=cfg.face.motion_check == "veto",
        on_faces=on_faces,
        fps=cc.fps,
        **(stereo or {}),
    )
    ctx.status[cam] = "starting"
    ctx.add_service(ServiceSpec(f"face-{cam}", path.run))
    return path


def build_pair(ctx: FaceContext, dc: DoorConfig, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """The pair's check (3-D or NIR) and the second view's capture (FacePath fields).

    ModelError/ConfigError when the landmark model or the calibration cannot be used: the
    caller disables the face path of the door (fail closed; card and PIN unaffected).
    """
    from gateway.face.nir_check import NirCheck
    from gateway.face.stereo_check import StereoCheck
    from gateway.gate.camera import CameraCapture, OpenCVSource
    from gateway.privacy.zones import ZoneMasker

    pair = dc.pair
    assert pair is not None  # noqa: S101 - called for a door with a pair
    if pair.calibration is None:
        raise ModelError("a camera pair needs its calibration: no face at this door")
    out: dict[str, Any] = {
        "stereo": StereoCheck.load(ctx.cfg.face.model_dir, pair.calibration, pair.baseline_mm)
        if pair.kind == "stereo"
        else NirCheck.load(pair.calibration, pair.baseline_mm)
    }
    if pair.camera is not None:
        sc = ctx.cfg.cameras[pair.camera]
        out["second"] = CameraCapture(
            pair.camera,
            lambda: OpenCVSource(sc.stream_url(), sc.width, sc.height),
            fps=sc.fps,
            on_state=_camera_state(ctx, pair.camera, loop),
        )
        out["second_masker"] = ZoneMasker(pair.camera, [z.polygon for z in sc.zones])
    return out


def _load_pipeline(model_dir: Path, settings: Any) -> Any:
    from gateway.face.pipeline import FacePipeline

    return FacePipeline.load(model_dir, settings)
