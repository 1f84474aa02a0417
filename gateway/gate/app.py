"""The composition root: build the parts of one gate and wire them into the daemon.

Readers and doors are critical: PIN and card must always work. The face path, MQTT and
housekeeping are not: they may fail and come back without touching a door.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any, TypeVar

from gateway import access
from gateway.config.root import GatewayConfig
from gateway.credentials.hashing import LockoutPolicy
from gateway.credentials.store import Credentials
from gateway.daemon.process import Daemon
from gateway.daemon.supervisor import ServiceSpec
from gateway.errors import GatewayError
from gateway.face.gallery import Gallery
from gateway.gate.audit_watch import AuditWatch
from gateway.gate.cache_wiring import announce_storage, build_cache, storage_health
from gateway.gate.card_capture import CardCapture
from gateway.gate.controller import AccessController, DoorRuntime
from gateway.gate.data_watch import DataWatch
from gateway.gate.db_threads import DbThreads
from gateway.gate.doors import GpioBindings, build_door
from gateway.gate.enrol_at_gate import GateEnrolment
from gateway.gate.events_sink import EventSink
from gateway.gate.face_paths import FaceContext, FaceSink, build_face
from gateway.gate.inputs import InputsFactory, gpio_inputs, open_gpio_inputs
from gateway.gate.mqtt_wiring import build_mqtt
from gateway.gate.policy import build_engine
from gateway.gate.readers import close_readers, open_readers, run_reader
from gateway.gate.remote_commands import CommandDeps, register_remote_commands
from gateway.gate.retention_task import run_retention
from gateway.gate.roster_wiring import add_roster
from gateway.gate.web_wiring import ConsoleView, DoctorRows, add_web_console
from gateway.gate.withdrawal_announce import GateWithdrawals, WithdrawalDeps
from gateway.hardware.readers import Reader
from gateway.keys import Purpose
from gateway.mqtt.pseudonym import Pseudonymizer
from gateway.privacy import access_log, audit, protection_record
from gateway.privacy.vault import Vault
from gateway.services.keys import load_keys

if TYPE_CHECKING:
    from gateway.gate.facepath import FacePath
    from gateway.gate.roster_agent import GateRosterAgent
    from gateway.mqtt.commands import CommandProcessor
    from gateway.services.cache_follower import CacheFollower
    from gateway.services.cache_state import CacheState

log = logging.getLogger(__name__)
T = TypeVar("T")


class Gateway:
    """Everything a running gateway holds (also used by the demo and the tests)."""

    def __init__(self, daemon: Daemon, doctor: DoctorRows | None = None) -> None:
        self.daemon = daemon
        self.doctor = doctor  # the ``gateway doctor`` table, for the web console
        self.cfg: GatewayConfig = daemon.cfg
        assert daemon.db is not None  # noqa: S101 - the daemon opens the store first
        self.db = daemon.db
        self.keys = load_keys(self.cfg, self.db.conn)  # with the carried device subkeys
        protection_record.check(self.db.conn, self.cfg.privacy.template_protection)
        self._ro = daemon.storage_read_only is not None  # DEGRADED storage
        self.threads = DbThreads(self.cfg.storage.database_path, read_only=self._ro)
        self.run_db, self.run_decide = self.threads.run_db, self.threads.run_decide
        audit.bind_key(self.db, audit.ChainKey(self.keys.subkey(Purpose.AUDIT_CHAIN)))  # every conn
        audit.hold_writes(self.db, None)  # a gate (re)started holds the current keys
        access_log.bind_key(self.db, self.keys.subkey(Purpose.ACCESS_LOG))
        self.pseudonym = Pseudonymizer(self.keys.pseudonym, self.cfg.privacy.pseudonym_epoch_s)
        # Every gate has the vault and the live gallery: erasures need them.
        self.vault = Vault.from_keys(self.keys, protection=self.cfg.privacy.template_protection)
        self.gallery = Gallery(self.vault.dim)
        mqtt = build_mqtt(
            self.cfg, read_only=self._ro, health=self.health, add_service=daemon.add_service
        )
        self.topics = mqtt.topics if mqtt else None
        self.outbox = mqtt.outbox if mqtt else None
        self.commands: CommandProcessor | None = mqtt.commands if mqtt else None
        self.mqtt = mqtt.service if mqtt else None
        self.events = EventSink(self.cfg.site.gate, self.mqtt, self.outbox, self._storage_suspect)
        self.emit = self.events.emit
        self.withdrawals = GateWithdrawals(  # withdrawal erasure and announcing
            WithdrawalDeps(
                self.cfg,
                self.keys,
                self.db,
                self.run_db,
                self.vault,
                self.gallery,
                self.pseudonym,
                self.emit,
                self.outbox,
                self.topics,
            )
        )
        if self.mqtt is not None:
            self.mqtt.handle_withdrawals(self.withdrawals.on_fanout)
        self.audit_watch = AuditWatch.for_gate(
            self.cfg,
            db=self.db,
            run_db=self.run_db,
            emit=self.emit,
            outbox=self.outbox,
            topics=self.topics,
            retained=self.mqtt.retained if self.mqtt is not None else None,
        )
        self.readers: dict[str, Reader] = {}
        self.pipeline: Any = None
        self.face_paths: dict[str, FacePath] = {}
        self.face_status: dict[str, str] = {}  # camera -> face path status
        self.controller: AccessController | None = None
        self.data_watch: DataWatch | None = None
        self.cache_state: CacheState | None = None  # the credential cache's state, from setup()
        self.cache_follower: CacheFollower | None = None  # the service that keeps it current
        self.gpio_inputs_factory: InputsFactory = open_gpio_inputs  # tests use a fake
        self.card_capture = CardCapture(lambda: list(self.readers))  # "present the card now"
        self.roster: GateRosterAgent | None = None  # [roster] role = "gate"

    def _storage_suspect(self) -> bool:
        ctl = self.controller
        return bool(
            self._ro
            or (ctl is not None and ctl.credentials.store_down)
            or (self.outbox is not None and self.outbox.degraded)
        )

    def health(self) -> dict[str, Any]:
        """Status summary: services, face path, outbox, storage (no identities)."""
        out: dict[str, Any] = dict(self.daemon.health())
        out["face"] = dict(self.face_status)
        if self.roster is not None:
            out["roster"] = "applied" if self.roster.synced.is_set() else "waiting (face closed)"
        self.events.health(out)
        if self.controller is not None:
            out["storage"] = self.controller.storage_degraded or "ok"
        storage_health(out, self.daemon.storage_read_only, self.controller, self.cache_state)
        enrolled = self.data_watch.enrolled_count if self.data_watch is not None else None
        if enrolled is not None:
            out["enrolled_people"] = enrolled
        # online / recovering (being reset after a bad frame or silence) / offline
        out["readers"] = {n: str(getattr(r, "health", "unknown")) for n, r in self.readers.items()}
        return out

    # -- building blocks -----------------------------------------------------------------------
    def _build_controller(
        self,
        engine: access.PolicyEngine,
        credentials: Credentials,
        doors: dict[str, DoorRuntime],
        enrolment: GateEnrolment,
    ) -> AccessController:
        cfg = self.cfg
        pin_timeout = min((r.pin_timeout_s for r in cfg.readers.values()), default=5.0)
        return AccessController(
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
            on_enrol=enrolment.enrol,
            run_db=self.run_db,
            cache_state=self.cache_state,
            run_decide=self.run_decide,
        )

    def _door_event(self, event: Any) -> None:
        """A door's event, to the access controller (built after the doors: it holds them)."""
        if self.controller is not None:
            self.controller.on_door_event(event)

    def _build_doors(self) -> dict[str, DoorRuntime]:
        """Every door; a door with inputs on GPIO lines gets a service that reads them."""
        doors: dict[str, DoorRuntime] = {}
        for name, dc in self.cfg.doors.items():
            doors[name], gpio = build_door(name, dc, self.readers, self._door_event)
            if gpio:
                self._add_gpio_service(name, doors[name], gpio)
        return doors

    def _add_gpio_service(self, name: str, door: DoorRuntime, gpio: GpioBindings) -> None:
        run = functools.partial(gpio_inputs, name, door.controller, gpio, self.gpio_inputs_factory)
        self.daemon.add_service(ServiceSpec(f"door-{name}-gpio-inputs", run))

    async def _build_face(self, engine: access.PolicyEngine, ctl: AccessController) -> None:
        """The face paths (none on a gate without face), then the data watch."""
        vault, gallery = self.vault, self.gallery
        add, status = self.daemon.add_service, self.face_status
        ctx = FaceContext(self.cfg, self.db, self.run_db, self.emit, add, status, vault, gallery)
        sink: FaceSink = ctl.on_face_outcome
        if self.roster is not None:  # face stays closed until the roster is applied
            sink = self.roster.face_guard(sink)
        face = await build_face(ctx, engine, sink, ctl.note_faces)
        self.pipeline = face.pipeline
        self.face_paths.update(face.paths)
        self.data_watch = DataWatch(
            self.cfg,
            self.db,
            self.run_db,
            announce_withdrawals=self.withdrawals.announce,
            count_changed=self.mqtt.status_changed if self.mqtt is not None else None,
            live_gallery=(vault, gallery) if face.gallery_live else None,
        )

    # -- services -------------------------------------------------------------------------------
    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.controller is not None:
                await self.controller.tick()

    async def setup(self) -> None:
        """Build every part and register the services with the daemon."""
        cfg = self.cfg
        engine = build_engine(cfg)
        self.readers.update(open_readers(cfg.readers))
        credentials = Credentials(
            self.threads.decide_db,
            self.keys.device,
            index_key=self.keys.pin_index_site,
            carried=self.keys.carried,
            lockout=LockoutPolicy(),
        )
        self.cache_state, self.cache_follower = build_cache(cfg, credentials)
        doors = self._build_doors()
        enrolment = GateEnrolment(
            cfg,
            self.db,
            self.run_db,
            vault=self.vault,
            gallery=self.gallery,
            face_paths=self.face_paths,  # filled once the face paths are built
        )
        self.controller = controller = self._build_controller(engine, credentials, doors, enrolment)
        self.roster = add_roster(
            cfg,
            self.keys,
            self.db,
            self.vault,
            gallery=self.gallery,
            run_db=self.run_db,
            add_service=self.daemon.add_service,
            credentials=credentials,
            cache=self.cache_state,
            restart=self.daemon.request_restart,
        )
        if self.roster is not None:  # the roster before the first decision (see README)
            await self.roster.sync_once(cfg.roster.startup_sync_s)
        await self._build_face(engine, controller)
        # Doors reach their safe state through the readers BEFORE services stop and the
        # reader buses close (on_safe_state runs first); readers close in a shutdown hook.
        self.daemon.on_shutdown("readers", self._close)
        deps = CommandDeps(
            cfg,
            self.keys,
            self.db,
            self.run_db,
            self.vault,
            self.gallery,
            self.run_decide,
            controller,
            self.cache_state,
            self.face_paths,
            self.daemon.reload,
            self.daemon.request_restart,
            self.daemon.request_stop,
        )
        self.remote_commands = register_remote_commands(deps, self.withdrawals, self.commands)
        self._add_services(controller, doors)
        mqtt = self.mqtt
        view = ConsoleView(
            self.health,
            (lambda: mqtt.connected) if mqtt is not None else None,
            self.events,
            self.daemon.config_path,
            self.doctor,
            self.card_capture.next_card,
            self.card_capture.next_pin,
            lambda: self.pipeline,
        )
        add_web_console(
            deps, self.withdrawals, self.daemon.add_service, self.daemon.storage_read_only, view
        )
        announce_storage(cfg, self.daemon.storage_read_only, self.emit)

    def _add_services(self, controller: AccessController, doors: dict[str, DoorRuntime]) -> None:
        add = self.daemon.add_service
        on_event = self.card_capture.wrap(controller.on_reader_event)
        for name, reader in self.readers.items():
            run = functools.partial(run_reader, name, reader, on_event)
            add(ServiceSpec(f"reader-{name}", run, critical=True))
        for name, rt in doors.items():
            add(ServiceSpec(f"door-{name}", rt.controller.run, critical=True))
            self.daemon.on_safe_state(f"door-{name}", rt.controller.shutdown)
        add(ServiceSpec("access-ticker", self._ticker, critical=True))
        retention = functools.partial(
            run_retention, self.cfg, self.db, self.run_db, self.vault, self.gallery
        )
        add(ServiceSpec("retention", retention))
        add(ServiceSpec("data-watch", _need(self.data_watch).run))
        add(ServiceSpec("audit-watch", self.audit_watch.run))
        add(ServiceSpec("credential-cache", _need(self.cache_follower).run))

    async def _close(self) -> None:
        await close_readers(self.readers)
        self.events.close()
        await self.threads.close(self.cfg.site.gate)


def _need(value: T | None) -> T:
    if value is None:
        raise GatewayError("the gateway is not fully set up yet")
    return value


async def build_gateway(daemon: Daemon, doctor: DoctorRows | None = None) -> Gateway:
    """The daemon's factory: a gateway built from its configuration, services registered
    (``doctor``: the ``gateway doctor`` table, shown by the web console)."""
    gateway = Gateway(daemon, doctor)
    await gateway.setup()
    log.info("gateway %s: subsystems wired", daemon.cfg.site.gate)
    return gateway
