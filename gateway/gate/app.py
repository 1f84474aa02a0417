"""Wire the subsystems into the daemon's supervised services.

Readers and doors are critical: PIN and card must always work. The face path, MQTT and
housekeeping are not: they may fail and come back without touching a door.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from gateway import access
from gateway.config.doors import DoorConfig
from gateway.config.readers import ReaderConfig
from gateway.config.root import GatewayConfig
from gateway.config.settings import door_policy, face_settings
from gateway.credentials.hashing import LockoutPolicy
from gateway.credentials.store import Credentials
from gateway.daemon.supervisor import ServiceSpec
from gateway.errors import GatewayError, ModelError
from gateway.gate.audit_watch import AuditWatch
from gateway.gate.cache_wiring import announce_storage, build_cache, storage_health
from gateway.gate.controller import AccessController, DoorRuntime
from gateway.gate.remote_commands import register_remote_commands
from gateway.gate.withdrawal_announce import GateWithdrawals
from gateway.hardware.door import DoorConfig as MachineConfig
from gateway.hardware.door import DoorStateMachine
from gateway.hardware.door_controller import DoorController
from gateway.hardware.io import (
    DoorInputMap,
    FakeRelay,
    InputRole,
    LockSpec,
    OsdpRelay,
    relay_energized,
)
from gateway.hardware.lock import DoorLock
from gateway.hardware.readers import Reader, open_reader
from gateway.keys import Keys
from gateway.mqtt import events as ev
from gateway.privacy import access_log, audit
from gateway.services.event_handoff import EventHandoff
from gateway.store.readonly import open_extra

if TYPE_CHECKING:
    from gateway.daemon.process import Daemon
    from gateway.face.gallery import Gallery
    from gateway.face.settings import FaceSettings
    from gateway.privacy.vault import Vault

log = logging.getLogger(__name__)
T = TypeVar("T")

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


class Gateway:
    """Everything a running gateway holds (also used by the demo and the tests)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.cfg: GatewayConfig = daemon.cfg
        assert daemon.db is not None  # noqa: S101 - the daemon opens the store first
        self.db = daemon.db
        self.keys = Keys.from_config(self.cfg)
        self._db_executor = ThreadPoolExecutor(1, thread_name_prefix="db")
        self.readers: dict[str, Reader] = {}
        self.mqtt: Any = None
        self.outbox: Any = None
        self.gallery: Gallery | None = None
        self.vault: Vault | None = None
        self.pipeline: Any = None
        self.face_paths: dict[str, Any] = {}
        self.face_status: dict[str, str] = {}
        self.controller: AccessController | None = None
        self.events_emitted = 0
        self.enrolled_count: int | None = None
        self._gallery_live = False
        self.topics: Any = None
        self.withdrawals = GateWithdrawals(self)  # withdrawal erasure and announcing
        self._data_seen: tuple[int, ...] | None = None  # _watch_data's last data version
        self.cache_state: Any = None  # gateway.services.cache_state.CacheState, from setup()
        self.cache_follower: Any = None  # its CacheFollower service, from setup()
        self._ro = getattr(daemon, "storage_read_only", None) is not None  # DEGRADED storage
        self._handoff = EventHandoff(self._queue_event, self._storage_suspect)
        self._handoff.always = True
        self._daemon_health: Callable[[], dict[str, Any]] = daemon.health

    # -- helpers ----------------------------------------------------------------------------
    async def run_db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a database call on the single database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_executor, functools.partial(fn, *args, **kwargs))

    async def run_decide(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a call on the credential store's own thread and connection (decisions, the
        credential services, the cache follower)."""
        executor = getattr(self, "_decide_executor", None) or self._db_executor
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, functools.partial(fn, *args, **kwargs))

    def emit(self, event: ev.BaseEvent) -> None:
        """Publish one event through the durable outbox (never raises)."""
        self.events_emitted += 1
        log.info("gate %s: event %s", self.cfg.site.gate, event.type)
        try:
            if self.mqtt is not None or self.outbox is not None:
                self._handoff(event)
        except Exception:
            log.exception("gate %s: event %s could not be queued", self.cfg.site.gate, event.type)

    def _queue_event(self, event: ev.BaseEvent) -> None:
        if self.mqtt is not None:
            self.mqtt.publish_event(event)
        elif self.outbox is not None:
            self.outbox.put(event)

    def _storage_suspect(self) -> bool:
        ctl = self.controller
        return bool(
            self._ro
            or (ctl is not None and ctl.credentials.store_down)
            or (self.outbox is not None and self.outbox.degraded)
        )

    def emit_threadsafe(self, loop: asyncio.AbstractEventLoop, event: ev.BaseEvent) -> None:
        """Publish from a worker thread."""
        loop.call_soon_threadsafe(self.emit, event)

    def health(self) -> dict[str, Any]:
        """Status summary: services, face path, outbox, storage (no identities)."""
        out: dict[str, Any] = dict(self._daemon_health())
        out["face"] = dict(self.face_status)
        if self.outbox is not None:
            stats = self.outbox.stats()
            out["outbox"] = {
                k: getattr(stats, k)
                for k in ("pending", "in_memory", "journalled", "dropped_total", "journal_failed")
                if hasattr(stats, k)
            }
            out["outbox_degraded"] = self.outbox.degraded
        if self.controller is not None:
            out["storage"] = self.controller.storage_degraded or "ok"
        storage_health(self, out)
        if self.enrolled_count is not None:
            out["enrolled_people"] = self.enrolled_count
        # online / recovering (being reset after a bad frame or silence) / offline
        out["readers"] = {n: str(getattr(r, "health", "unknown")) for n, r in self.readers.items()}
        return out

    # -- building blocks -----------------------------------------------------------------------
    def build_mqtt(self) -> None:
        """Outbox (own connection), command processor and MQTT service."""
        cfg = self.cfg
        if not cfg.mqtt.enabled:
            log.info("gate %s: MQTT disabled; events are only logged", cfg.site.gate)
            return
        from gateway.mqtt.client import MqttService
        from gateway.mqtt.commands import CommandProcessor
        from gateway.mqtt.fleet import settings_from_config
        from gateway.mqtt.outbox import Outbox
        from gateway.mqtt.topics import Topics

        topics = Topics(cfg.mqtt.topic_prefix, cfg.site.id, cfg.site.gate)
        self.topics = topics
        self.outbox = Outbox(
            # Used on the event loop: a short lock wait, then the in-memory buffer.
            open_extra(cfg.storage.database_path, busy_timeout_ms=200, read_only=self._ro),
            topics,
            max_events=cfg.mqtt.outbox_max_events,
            max_age_s=cfg.mqtt.outbox_max_age_s,
            memory_max=cfg.mqtt.outbox_memory_max,
        )
        # Also used on the event loop (nonces, audit of rejected commands): short wait.
        commands_db = open_extra(cfg.storage.database_path, busy_timeout_ms=200, read_only=self._ro)
        self.commands = CommandProcessor(
            commands_db,
            cfg.mqtt.command_keys,
            window_s=cfg.mqtt.command_window_s,
            max_bytes=cfg.mqtt.command_max_bytes,
            site=cfg.site.id,
            gate=cfg.site.gate,
            audit=audit.appender(commands_db),
        )
        if cfg.mqtt.url is None:
            log.warning(
                "gate %s: no MQTT broker configured; events wait in the outbox", cfg.site.gate
            )
            # with a broker, MqttService.run runs this loop itself
            self.daemon.add_service(ServiceSpec("outbox", self.outbox.persist_loop))
            return
        settings = settings_from_config(cfg)
        assert settings is not None  # noqa: S101 - url checked above
        ha = None
        if cfg.mqtt.homeassistant_discovery:
            from gateway.mqtt.homeassistant import HomeAssistant

            ha = HomeAssistant(topics, list(cfg.doors), cfg.mqtt.homeassistant_prefix)
        self.mqtt = MqttService(
            settings,
            topics,
            self.outbox,
            self.commands,
            health=self.health,
            homeassistant=ha,
            on_withdrawal=self.withdrawals.on_fanout,
        )
        self.daemon.add_service(ServiceSpec("mqtt", self.mqtt.run))

    def build_engine(self) -> access.PolicyEngine:
        """The pure policy engine from the configuration."""
        cfg = self.cfg
        doors = {name: door_policy(d, cfg) for name, d in cfg.doors.items()}
        groups: dict[str, access.AccessGroup] = {}
        for name, g in cfg.access_groups.items():
            schedule = None
            if g.schedule:
                schedule = access.WeeklySchedule.from_windows(
                    [(frozenset(_DAYS[d] for d in w.days), w.start, w.end) for w in g.schedule]
                )
            holidays: dict[dt.date, access.Holiday] = {d: access.Holiday() for d in g.holidays}
            for day, ranges in g.holiday_hours.items():
                holidays[day] = access.Holiday(
                    ranges=tuple(access.TimeRange(r.start, r.end) for r in ranges)
                )
            groups[name] = access.AccessGroup(schedule=schedule, holidays=holidays)
        pairs = [
            access.AntiPassbackPair(
                entry=name,
                exit=d.anti_passback_pair,
                mode=access.AntiPassbackMode(d.anti_passback),
                forget_after_s=d.anti_passback_forget_after_s,
            )
            for name, d in cfg.doors.items()
            if d.anti_passback != "off" and d.anti_passback_pair
        ]
        return access.PolicyEngine(doors, groups, cfg.site.timezone, anti_passback=pairs)

    def build_readers(self) -> None:
        """Reader drivers (not started yet); OSDP readers on one line share one bus."""
        self.readers.update(open_readers(self.cfg.readers))

    def build_door(self, name: str, dc: DoorConfig, on_event: Callable[[Any], None]) -> DoorRuntime:
        """A door controller with its lock relay and input map."""
        from gateway.hardware.io import LockType as HwLockType

        spec = LockSpec(lock_type=HwLockType(dc.relay.lock_type.value))
        relay: Any
        if dc.relay.kind == "osdp":
            reader_name = dc.relay.reader or dc.reader
            assert reader_name is not None  # noqa: S101 - config validation guarantees it
            relay = OsdpRelay(self.readers[reader_name], dc.relay.output)
        elif dc.relay.kind == "gpio":
            from gateway.hardware.io import GpioRelay

            assert dc.relay.line is not None  # noqa: S101 - config validation guarantees it
            relay = GpioRelay(
                dc.relay.chip,
                dc.relay.line,
                name=f"{name}-relay",
                rest_level=relay_energized(spec, False),  # requested locked
            )
        else:
            relay = FakeRelay(f"{name}-no-lock")
        inputs = DoorInputMap(
            contact=dc.contact.input if dc.contact.kind == "osdp" else None,
            exit=dc.exit_button.input if dc.exit_button.kind == "osdp" else None,
            tamper=dc.tamper.input if dc.tamper.kind == "osdp" else None,
        )
        gpio = [
            (role, binding)
            for role, binding in (
                (InputRole.CONTACT, dc.contact),
                (InputRole.EXIT, dc.exit_button),
                (InputRole.TAMPER, dc.tamper),
            )
            if binding.kind == "gpio"
        ]
        machine = DoorStateMachine(
            MachineConfig(name, unlock_s=dc.unlock_seconds, held_open_s=dc.held_open_seconds)
        )
        controller = DoorController(machine, DoorLock(name, relay, spec), inputs, on_event=on_event)
        readers = {b.reader or dc.reader for b in (dc.contact, dc.exit_button, dc.tamper)}
        controller.input_readers = {r for r in readers if r}  # type: ignore[attr-defined]
        if gpio:
            self.daemon.add_service(
                ServiceSpec(
                    f"door-{name}-gpio-inputs",
                    functools.partial(self._gpio_inputs, name, controller, gpio),
                )
            )
        return DoorRuntime(
            name=name,
            controller=controller,
            reader=dc.reader,
            camera=dc.camera,
            unlock_s=dc.unlock_seconds,
            held_open_s=dc.held_open_seconds,
        )

    # -- face path ---------------------------------------------------------------------------
    def _face_settings(self) -> FaceSettings:
        return face_settings(self.cfg)

    async def build_face(self, engine: access.PolicyEngine) -> None:
        """Load models and the gallery, and create one face path per face camera."""
        from gateway.face.gallery import Gallery
        from gateway.privacy.vault import Vault, load_gallery

        cfg = self.cfg
        self.vault = Vault.from_root_keys(self.keys.device, self.keys.site)
        self.gallery = Gallery()
        face_cameras = {d.camera: name for name, d in cfg.doors.items() if d.uses_face and d.camera}
        if not cfg.face.enabled or not face_cameras:
            return
        await self._record_notice()
        try:
            self.pipeline = await asyncio.to_thread(
                _load_pipeline, cfg.face.model_dir, self._face_settings()
            )
        except (ModelError, GatewayError) as exc:
            log.error(
                "gate %s: face path disabled, PIN and card unaffected: %s", cfg.site.gate, exc
            )
            for cam in face_cameras:
                self.face_status[cam] = "disabled: model_error"
                self.emit(
                    ev.FacePathDisabled(
                        site=cfg.site.id,
                        gate=cfg.site.gate,
                        reason=ev.FacePathReason.MODEL_ERROR,
                        camera=cam,
                    )
                )
            return
        if not self.pipeline.has_liveness:
            blocked = [
                cam
                for cam, door in face_cameras.items()
                if cfg.doors[door].liveness.value == "required"
            ]
            for cam in blocked:
                del face_cameras[cam]
                self.face_status[cam] = "disabled: no anti-spoofing model"
                self.emit(
                    ev.FacePathDisabled(
                        site=cfg.site.id,
                        gate=cfg.site.gate,
                        reason=ev.FacePathReason.MODEL_ERROR,
                        camera=cam,
                    )
                )
            if blocked:
                log.error(
                    "gate %s: face path disabled on cameras %s, PIN and card unaffected: "
                    "their doors require liveness and no anti-spoofing model is installed "
                    "(gateway models install --antispoof DIR)",
                    cfg.site.gate,
                    ", ".join(blocked),
                )
        from gateway.privacy.consent import face_allowed

        counts = await self.run_db(
            load_gallery,
            self.db,
            self.vault,
            self.gallery,
            allowed=face_allowed(self.db, grace_days=cfg.privacy.renotice_grace_days),
        )
        log.info("gate %s: gallery loaded: %s", cfg.site.gate, counts)
        for cam, door in face_cameras.items():
            if not self._camera_allowed(cam):
                continue
            self._build_face_path(cam, door, engine)
        self._gallery_live = True

    def _camera_allowed(self, cam: str) -> bool:
        """The Art. 9/13 rules again at runtime (config validation already enforces them):
        no face processing on a private-space camera, without signage, or without an impact
        assessment on record. No role can override it."""
        from gateway.privacy.zones import ZoneError, require_camera_allowed

        cc = self.cfg.cameras[cam]
        ia = self.cfg.privacy.impact_assessment
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
            self.face_status[cam] = "disabled: " + ("private_space" if private else "rules")
            self.emit(
                ev.FacePathDisabled(
                    site=self.cfg.site.id,
                    gate=self.cfg.site.gate,
                    reason=ev.FacePathReason.PRIVATE_SPACE
                    if private
                    else ev.FacePathReason.IMPACT_ASSESSMENT_MISSING,
                    camera=cam,
                )
            )
            return False
        return True

    async def _record_notice(self) -> None:
        notice_file = self.cfg.privacy.notice_file
        if notice_file is None:
            return
        from gateway.privacy.consent import set_notice
        from gateway.privacy.notice import load_notice

        try:
            notice = load_notice(notice_file, self.cfg.privacy.notice_version)
            flagged = await self.run_db(set_notice, self.db, notice, actor="system:startup")
        except GatewayError as exc:
            log.error("gate %s: consent notice problem: %s", self.cfg.site.gate, exc)
            return
        if flagged:
            log.warning(
                "gate %s: notice version %s is new: %d people flagged for re-notice",
                self.cfg.site.gate,
                self.cfg.privacy.notice_version,
                flagged,
            )

    def _build_face_path(self, cam: str, door: str, engine: access.PolicyEngine) -> None:
        from gateway.face.settings import MatchSettings
        from gateway.gate.camera import CameraCapture, OpenCVSource
        from gateway.gate.facepath import FacePath
        from gateway.privacy.zones import ZoneMasker

        cfg = self.cfg
        cc = cfg.cameras[cam]
        loop = asyncio.get_running_loop()
        if cc.inline_password:
            log.warning(
                "camera %s: its password is written inside 'source'; move it to "
                "cameras.%s.password (a file or systemd credential)",
                cam,
                cam,
            )

        def on_state(online: bool, reason: str) -> None:
            self.face_status[cam] = "running" if online else f"disabled: camera {reason}"
            site, gate = cfg.site.id, cfg.site.gate
            if online:
                self.emit_threadsafe(loop, ev.CameraOnline(site=site, gate=gate, camera=cam))
                self.emit_threadsafe(
                    loop,
                    ev.FacePathEnabled(
                        site=site, gate=gate, camera=cam, reason=ev.FacePathReason.RECOVERED
                    ),
                )
            else:
                self.emit_threadsafe(
                    loop,
                    ev.CameraOffline(
                        site=site, gate=gate, camera=cam, reason=ev.DeviceReason.NO_FRAMES
                    ),
                )
                self.emit_threadsafe(
                    loop,
                    ev.FacePathDisabled(
                        site=site,
                        gate=gate,
                        camera=cam,
                        reason=ev.FacePathReason.CAMERA_OFFLINE,
                    ),
                )

        capture = CameraCapture(
            cam,
            lambda: OpenCVSource(cc.stream_url(), cc.width, cc.height),
            fps=cc.fps,
            on_state=on_state,
        )
        dc = cfg.doors[door]
        tracker = access.ApproachTracker(
            access.FusionSettings(
                k=cfg.face.fusion_k,
                n=cfg.face.fusion_n,
                max_decision_age_ms=cfg.face.max_decision_age_ms,
                cooldown_s=cfg.face.cooldown_s,
                approach_gap_s=cfg.face.approach_gap_s,
                failed_face_attempts_before_fallback=cfg.face.failed_attempts_before_fallback,
                liveness=access.LivenessPolicy(dc.liveness.value),
            )
        )
        gallery, vault = _need(self.gallery), _need(self.vault)
        path = FacePath(
            camera=cam,
            door=door,
            reader=dc.reader,
            capture=capture,
            pipeline=self.pipeline,
            gallery=gallery,
            transform=vault.transform,
            masker=ZoneMasker(cam, [z.polygon for z in cc.zones]),
            engine=engine,
            tracker=tracker,
            settings=MatchSettings(
                cfg.face.match_threshold,
                cfg.face.match_margin,
                cfg.face.liveness_threshold,
                cfg.face.verify_threshold,
            ),
            sink=self._face_sink,
            liveness_enabled=dc.liveness.value != "off",
            consistency_k=cfg.face.consistency_frames,
            motion_veto=cfg.face.motion_check == "veto",
            on_faces=self._note_faces,
        )
        self.face_paths[cam] = path
        self.face_status[cam] = "starting"
        self.daemon.add_service(ServiceSpec(f"face-{cam}", path.run))

    async def _face_sink(self, camera: str, outcome: access.FusionOutcome) -> None:
        if self.controller is not None:
            await self.controller.on_face_outcome(camera, outcome)

    def _note_faces(self, camera: str, count: int) -> None:
        if self.controller is not None:
            self.controller.note_faces(camera, count)

    async def _watch_data(self) -> None:
        """Follow changes other processes (the CLI, the office) make to face data within
        ~250 ms: the people count published for Art. 15, on a face gate the live gallery,
        and on every gate the withdrawals still to announce to the site's other gates."""
        retry_at: float | None = None  # withdrawals left to announce: try again then
        while True:
            try:
                version = await self.run_db(_data_version, self.db)
            except sqlite3.Error as exc:
                log.warning("gate %s: cannot read the data version: %s", self.cfg.site.gate, exc)
                await asyncio.sleep(5.0)
                continue
            last = self._data_seen  # kept across restarts of this service
            due = retry_at is not None and time.monotonic() >= retry_at
            if version != last or due:
                if version[0] != self.enrolled_count:  # count(*) of face_keys
                    self.enrolled_count = version[0]
                    if self.mqtt is not None:
                        self.mqtt.status_changed()
                if last is not None and version != last and self._gallery_live:
                    await self._sync_gallery()
                self._data_seen = version
                # Withdrawals recorded by any process (the CLI too, or while this daemon
                # was down), on every gate, face path or not.
                ok = await self.withdrawals.announce()
                retry_at = None if ok else time.monotonic() + 5.0
            await asyncio.sleep(0.25)

    async def _sync_gallery(self) -> None:
        from gateway.privacy.consent import face_allowed
        from gateway.privacy.vault import load_gallery

        gallery, vault = _need(self.gallery), _need(self.vault)
        allowed = face_allowed(self.db, grace_days=self.cfg.privacy.renotice_grace_days)

        def wanted_people() -> set[str]:
            return {p for p in vault.enrolled_people(self.db) if allowed(p)}

        wanted = await self.run_db(wanted_people)
        for gone in gallery.people() - wanted:
            gallery.remove_person(gone)
            log.info("gate %s: a person's face data left the live gallery", self.cfg.site.gate)
        await self.run_db(load_gallery, self.db, vault, gallery, allowed=allowed)

    async def enrol_at_gate(self, person_id: str, door: str) -> str:
        """Enrol a resident identified by card/PIN from the door's camera; a reader message."""
        from gateway.privacy.consent import face_status
        from gateway.privacy.enroll import enroll_from_frames

        cam = self.cfg.doors[door].camera
        path = self.face_paths.get(cam) if cam else None
        if path is None or self.vault is None or self.gallery is None:
            return "Face enrolment is not available at this gate"
        status = await self.run_db(
            face_status, self.db, person_id, grace_days=self.cfg.privacy.renotice_grace_days
        )
        if not status.allowed:
            log.info("door %s: at-gate enrolment refused: %s", door, status.reason)
            return "No face consent on record: ask the management office"
        if await self.run_db(self.vault.has_face_data, self.db, person_id):
            # Never replace someone's face data at a gate: that is for the office, in person.
            log.info("door %s: at-gate enrolment refused: face data already on record", door)
            return "Face already enrolled: ask the management office to re-enrol"
        if not path.pipeline.has_liveness:
            log.info("door %s: at-gate enrolment refused: no anti-spoofing model", door)
            return "Face enrolment needs the liveness check: ask the management office"
        limit = self.cfg.privacy.gate_enrol_timeout_s
        try:
            result = await enroll_from_frames(
                self.db,
                self.vault,
                self.gallery,
                person_id,
                path.enrol_frames(limit),
                needed=self.cfg.privacy.gate_enrol_frames,
                timeout_s=limit,
                min_liveness=self.cfg.face.liveness_threshold,
                actor=f"gate:{door}",
                grace_days=self.cfg.privacy.renotice_grace_days,
            )
        except GatewayError as exc:
            log.info("door %s: at-gate enrolment failed: %s", door, exc)
            return "Face enrolment failed: please try again"
        log.info("door %s: face enrolled at the gate (%d templates)", door, result.stored)
        return "Face enrolled"

    # -- services -------------------------------------------------------------------------------
    async def _reader_loop(self, name: str) -> None:
        reader = self.readers[name]
        await reader.start()
        try:
            async for event in reader.events():
                assert self.controller is not None  # noqa: S101
                try:
                    await self.controller.on_reader_event(name, event)
                except (GatewayError, sqlite3.Error) as exc:
                    log.error(
                        "reader %s: event %s not handled: %s", name, type(event).__name__, exc
                    )
        finally:
            await reader.close()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.controller is not None:
                await self.controller.tick()

    async def _purger(self) -> None:
        from gateway.privacy.retention import RetentionPolicy, run_purge

        r = self.cfg.retention
        policy = RetentionPolicy(
            access_log_days=r.access_log_days,
            inactive_template_days=r.inactive_template_days,
            expired_person_days=r.expired_person_days,
            visitor_pin_grace_days=r.visitor_pin_grace_days,
            processing_records_years=r.processing_records_years,
            audit_days=r.audit_days,
            audit_max_rows=r.audit_max_rows,
            people_inactive_days=r.people_inactive_days,
        )
        from gateway.privacy.scrub import scrub_in_background

        while True:
            await scrub_in_background(self.cfg.storage.database_path, budget_s=1.0)
            if self.vault is not None and self.gallery is not None:
                report = await self.run_db(
                    run_purge, self.db, self.vault, self.gallery, policy, time.time()
                )
                log.info("gate %s: retention purge done: %s", self.cfg.site.gate, report)
            await asyncio.sleep(r.purge_interval_s)

    async def setup(self) -> None:
        """Build every part and register the services with the daemon."""
        from gateway.mqtt.pseudonym import Pseudonymizer

        cfg = self.cfg
        audit.bind_key(self.db, audit.ChainKey.from_device(self.keys.device))  # every connection
        access_log.bind_key(self.db, access_log.key_from_device(self.keys.device))
        self.pseudonym = Pseudonymizer(self.keys.site, cfg.privacy.pseudonym_epoch_s)
        self.build_mqtt()
        engine = self.build_engine()
        self.build_readers()
        # The credential store gets its own connection (short lock wait) and thread, so
        # that decisions never queue behind housekeeping on the shared database thread.
        self._decide_executor = ThreadPoolExecutor(1, thread_name_prefix="decide-db")
        self._decide_db = open_extra(
            cfg.storage.database_path, busy_timeout_ms=250, read_only=self._ro
        )
        credentials = Credentials(
            self._decide_db,
            self.keys.device,
            index_key=self.keys.pin_index_site,
            lockout=LockoutPolicy(),
        )
        self.cache_state, self.cache_follower = build_cache(self, credentials)
        holder: dict[str, AccessController] = {}

        def on_door_event(event: Any) -> None:
            if "c" in holder:
                holder["c"].on_door_event(event)

        doors = {name: self.build_door(name, dc, on_door_event) for name, dc in cfg.doors.items()}
        await self.build_face(engine)
        pin_timeout = min((r.pin_timeout_s for r in cfg.readers.values()), default=5.0)
        self.controller = AccessController(
            site=cfg.site.id,
            gate=cfg.site.gate,
            db=self.db,
            credentials=credentials,
            engine=engine,
            doors=doors,
            readers=self.readers,
            emit=self.emit,
            pseudonym=self.pseudonym,
            renotice_grace_days=cfg.privacy.renotice_grace_days,
            max_decision_age_ms=cfg.face.max_decision_age_ms,
            pin_timeout_s=pin_timeout,
            on_withdraw=self.withdrawals.withdraw,
            on_enrol=self.enrol_at_gate,
            run_db=self.run_db,
            cache_state=self.cache_state,
            run_decide=self.run_decide,
        )
        holder["c"] = self.controller
        # Doors reach their safe state through the readers BEFORE services stop and the
        # reader buses close (on_safe_state runs first); readers close in a shutdown hook.
        self.daemon.on_shutdown("readers", self._close)
        self.remote_commands = register_remote_commands(self, self.withdrawals)
        for name in self.readers:
            self.daemon.add_service(
                ServiceSpec(
                    f"reader-{name}", functools.partial(self._reader_loop, name), critical=True
                )
            )
        for name, rt in doors.items():
            self.daemon.add_service(ServiceSpec(f"door-{name}", rt.controller.run, critical=True))
            self.daemon.on_safe_state(f"door-{name}", rt.controller.shutdown)
        self.daemon.add_service(ServiceSpec("access-ticker", self._ticker, critical=True))
        self.daemon.add_service(ServiceSpec("retention", self._purger))
        self.daemon.add_service(ServiceSpec("data-watch", self._watch_data))
        self.daemon.add_service(ServiceSpec("audit-watch", AuditWatch.for_gateway(self).run))
        self.daemon.add_service(ServiceSpec("credential-cache", self.cache_follower.run))
        announce_storage(self)
        self._daemon_health = self.daemon.health
        self.daemon.health = self.health  # type: ignore[method-assign]

    async def _gpio_inputs(
        self, door: str, controller: DoorController, bindings: list[tuple[InputRole, Any]]
    ) -> None:
        """Door contact / exit button / tamper on GPIO lines: debounced levels -> the door.

        One input source per GPIO chip; a line's NC wiring and debounce come from its
        binding. Failure to open the lines (no libgpiod, no permission) is raised to the
        supervisor, which logs it and retries with backoff; readers' inputs are unaffected.
        """
        from gateway.hardware.events import InputChanged
        from gateway.hardware.io import Wiring

        # One source per chip and debounce time, so that each line keeps its own debounce.
        groups: dict[tuple[str, int], dict[int, tuple[InputRole, Any]]] = {}
        for role, b in bindings:
            groups.setdefault((b.chip, b.debounce_ms), {})[b.line] = (role, b)

        async def one(chip: str, debounce_ms: int, lines: dict[int, tuple[InputRole, Any]]) -> None:
            wiring = {
                line: Wiring.NC if b.normally_closed else Wiring.NO
                for line, (_, b) in lines.items()
            }
            source = self.gpio_inputs_factory(chip, wiring, f"{door}-gpio", debounce_ms / 1000)
            try:
                await source.start()
                log.info("door %s: %d GPIO input(s) on %s", door, len(lines), chip)
                async for event in source.events():
                    if isinstance(event, InputChanged) and event.input_no in lines:
                        role = lines[event.input_no][0]
                        await controller.handle_role(role, event.active)
            finally:
                await source.close()

        async with asyncio.TaskGroup() as tg:
            for (chip, debounce_ms), lines in groups.items():
                tg.create_task(
                    one(chip, debounce_ms, lines), name=f"gpio-{door}-{chip}-{debounce_ms}ms"
                )

    @staticmethod
    def gpio_inputs_factory(chip: str, lines: dict[int, Any], name: str, stable_s: float) -> Any:
        """The GPIO input source (libgpiod); tests replace it with a fake."""
        from gateway.hardware.io import GpioInputs

        return GpioInputs(chip, lines, name=name, stable_s=stable_s)

    async def _close(self) -> None:
        for reader in self.readers.values():
            try:
                await asyncio.wait_for(reader.close(), 1.0)
            except (TimeoutError, GatewayError) as exc:
                log.debug("reader close: %s", exc)
        self._handoff.close()
        # Let a running statement finish before the connection is closed under it (a
        # statement can be stuck in SQLite's busy wait while the store is locked).
        for pool in (self._db_executor, getattr(self, "_decide_executor", None)):
            if pool is None:
                continue
            done = asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
            try:
                await asyncio.wait_for(done, 3.0)
            except TimeoutError:
                log.warning("gate %s: a database call still runs at close", self.cfg.site.gate)
                return  # never close a connection under a running statement
        decide_db = getattr(self, "_decide_db", None)
        if decide_db is not None:
            decide_db.close()


def _need(value: T | None) -> T:
    if value is None:
        raise GatewayError("the gateway is not fully set up yet")
    return value


def _load_pipeline(model_dir: Path, settings: Any) -> Any:
    from gateway.face.pipeline import FacePipeline

    return FacePipeline.load(model_dir, settings)


def _data_version(db: Any) -> tuple[int, ...]:
    """Changes whenever face data or consent changes (cheap: four index lookups)."""
    row = db.execute(
        "SELECT (SELECT count(*) FROM face_keys), (SELECT coalesce(max(id), 0) FROM templates),"
        " (SELECT coalesce(max(id), 0) FROM consents),"
        " (SELECT coalesce(sum(needs_renotice), 0) FROM people)"
    ).fetchone()
    return tuple(int(v) for v in row)


def bus_key(rc: ReaderConfig) -> str:
    """Readers with the same key are PDs on one OSDP line (same device or socket)."""
    if rc.protocol != "osdp":
        return f"wiegand:{rc.url}"
    parts = urlsplit(rc.url)
    return urlunsplit(parts._replace(query="", fragment=""))


def open_readers(readers: dict[str, ReaderConfig]) -> dict[str, Reader]:
    """Build every reader driver; several PDs on one RS-485 line get one control panel."""
    from gateway.hardware.osdp import OsdpBus
    from gateway.hardware.osdp_transport import transport_from_url

    groups: dict[str, list[str]] = {}
    for name, rc in readers.items():
        groups.setdefault(bus_key(rc), []).append(name)
    out: dict[str, Reader] = {}
    for names in groups.values():
        first = readers[names[0]]
        if len(names) == 1 or first.protocol != "osdp":
            for name in names:
                rc = readers[name]
                out[name] = open_reader(_reader_url(rc), name, _scbk(rc), rc.install_mode)
            continue
        bus = OsdpBus(transport_from_url(_reader_url(first)))
        for name in names:
            rc = readers[name]
            out[name] = bus.add_reader(
                name, rc.address, scbk=_scbk(rc), install_mode=rc.install_mode
            )
        log.info("OSDP line %s: readers %s share one bus", bus_key(first), ", ".join(names))
    return out


def _scbk(rc: ReaderConfig) -> bytes | None:
    if rc.scbk is None:
        return None
    text = rc.scbk.read_bytes().decode().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise GatewayError("an SCBK must be 32 hexadecimal digits") from exc
    if len(key) != 16:
        raise GatewayError("an SCBK must be 16 bytes (32 hexadecimal digits)")
    return key


def _reader_url(rc: ReaderConfig) -> str:
    if rc.protocol != "osdp":
        return rc.url
    parts = urlsplit(rc.url)
    query = parse_qs(parts.query)
    query.setdefault("address", [str(rc.address)])
    if parts.scheme == "osdp":
        query.setdefault("baud", [str(rc.baud)])
    return urlunsplit(parts._replace(query=urlencode({k: v[0] for k, v in query.items()})))


async def setup_gateway(daemon: Daemon) -> None:
    """Create the services of a gateway from its configuration."""
    gateway = Gateway(daemon)
    await gateway.setup()
    daemon.gateway = gateway  # type: ignore[attr-defined]
    log.info("gateway %s: subsystems wired", daemon.cfg.site.gate)
