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
        out.paths[cam] = _build_face_path(
            ctx, cam, door, engine=engine, pipeline=out.pipeline, sink=sink, on_faces=on_faces
        )
    out.gallery_live = True
    return out


def _drop_liveness_required(ctx: FaceContext, face_cameras: dict[str, str]) -> None:
    """Without an anti-spoofing model, no face path on a door that requires liveness."""
    cfg = ctx.cfg
    blocked = [
        cam
        for cam, door in face_cameras.items()
        if cfg.doors[door].liveness is access.LivenessPolicy.REQUIRED
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
    capture = CameraCapture(
        cam,
        lambda: OpenCVSource(cc.stream_url(), cc.width, cc.height),
        fps=cc.fps,
        on_state=_camera_state(ctx, cam, asyncio.get_running_loop()),
    )
    dc = cfg.doors[door]
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
    )
    ctx.status[cam] = "starting"
    ctx.add_service(ServiceSpec(f"face-{cam}", path.run))
    return path


def _load_pipeline(model_dir: Path, settings: Any) -> Any:
    from gateway.face.pipeline import FacePipeline

    return FacePipeline.load(model_dir, settings)
