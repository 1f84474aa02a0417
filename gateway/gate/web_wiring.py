"""Wire the web console into the daemon when ``[web] enabled``: its backend (the gate's
database threads, credential store, vault, gallery, notice, compliance inputs) and a
supervised, non-critical service that serves it."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config.root import GatewayConfig
from gateway.daemon.supervisor import ServiceSpec
from gateway.errors import GatewayError
from gateway.gate.controller import AccessController
from gateway.gate.events_sink import EventSink
from gateway.gate.remote_commands import CommandDeps
from gateway.gate.withdrawal_announce import GateWithdrawals
from gateway.keys import Purpose
from gateway.privacy import compliance
from gateway.privacy.notice import Notice, load_notice
from gateway.privacy.scrub import scrub_in_background
from gateway.services.compliance import ReportRequest, retention_policy, thresholds_of
from gateway.services.credentials import CredentialDeps

log = logging.getLogger(__name__)


class WebErasures:
    """The console's withdrawals and deletions on the running gate: withdrawals through
    :class:`GateWithdrawals` (as the MQTT command), and after a deletion the same
    announcement and background WAL scrub."""

    def __init__(self, withdrawals: GateWithdrawals, database_path: Path) -> None:
        self._withdrawals = withdrawals
        self._path = database_path
        self.scrubs: set[asyncio.Task[bool]] = set()

    async def withdraw(self, person_id: str, actor: str) -> dict[str, Any]:
        """Withdraw on the web channel, audited as ``actor`` (``web:<account>``)."""
        return await self._withdrawals.withdraw(person_id, "web", actor=actor)

    async def after_deletion(self) -> None:
        """Announce the deletion's withdrawal receipt; scrub the WAL on its own thread."""
        await self._withdrawals.announce()
        self.scrubs.add(t := asyncio.create_task(scrub_in_background(self._path)))
        t.add_done_callback(self.scrubs.discard)


class OfficePipeline:
    """The face pipeline for office enrolment: the gate's when it has one, else loaded
    from the configured models on first use (on a thread; a failure is a clear error)."""

    def __init__(self, cfg: GatewayConfig, gate: Callable[[], Any] | None) -> None:
        self._cfg, self._gate = cfg, gate
        self._loaded: Any = None
        self._lock = asyncio.Lock()

    async def get(self) -> Any:
        """The pipeline (GatewayError when the models cannot be loaded)."""
        running = None if self._gate is None else self._gate()
        if running is not None:
            return running
        async with self._lock:
            if self._loaded is None:
                from gateway.config.settings import face_settings
                from gateway.services.enrolment import load_pipeline

                cfg = self._cfg
                self._loaded = await asyncio.to_thread(
                    load_pipeline, cfg.face.model_dir, face_settings(cfg)
                )
            return self._loaded


DoctorRows = Callable[[GatewayConfig], list[tuple[str, str, str]]]
"""The ``gateway doctor`` table of a configuration (check, PASS/WARN/FAIL/SKIP, detail)."""


@dataclass(frozen=True)
class ConsoleView:
    """What the console shows of the running gate: its status summary (no identities), the
    broker's connection (None without MQTT), and the events as published."""

    health: Callable[[], dict[str, Any]]
    broker_connected: Callable[[], bool] | None
    events: EventSink
    config_path: Path
    doctor: DoctorRows | None = None
    next_card: Callable[[str, float], Awaitable[tuple[int | None, int]]] | None = None
    """The next card presented at a reader (``gate.card_capture``)."""
    next_pin: Callable[[str, float], Awaitable[str]] | None = None
    """The next PIN typed on a reader's keypad (``gate.card_capture``)."""
    pipeline: Callable[[], Any] | None = None
    """The gate's face pipeline (None on a gate without face: office enrolment loads one)."""


def add_web_console(
    deps: CommandDeps,
    withdrawals: GateWithdrawals,
    add_service: Callable[[ServiceSpec], None],
    read_only: str | None,
    view: ConsoleView,
) -> None:
    """Register the console's service (nothing when ``[web]`` is not enabled). ``deps``:
    the running gate's parts, as the signed commands use them; ``withdrawals``: the gate's
    withdrawals (erase, announce to the site's other gates, scrub); ``read_only``: why the
    storage is read-only (DEGRADED), else None; ``view``: the dashboard's sources."""
    cfg = deps.cfg
    if not cfg.web.enabled:
        return
    from gateway.web.backend import Backend, RosterRole
    from gateway.web.live import EventFeed
    from gateway.web.server import serve

    feed = EventFeed()
    view.events.listeners.append(feed.publish)

    credentials = CredentialDeps(deps.controller.credentials, deps.cache_state)
    erasures = WebErasures(withdrawals, Path(cfg.storage.database_path))
    backend = Backend(
        cfg=cfg.web,
        db=deps.db,
        run_db=deps.run_db,
        run_decide=deps.run_decide,
        credential_deps=lambda: credentials,
        vault=deps.vault,
        gallery=deps.gallery,
        notice=functools.partial(_notice, cfg),
        report_request=functools.partial(_report_request, cfg),
        grace_days=cfg.privacy.renotice_grace_days,
        withdraw=erasures.withdraw,
        after_deletion=erasures.after_deletion,
        read_only=read_only,
        feed=feed,
        status=functools.partial(_status, view, deps.controller),
        pseudonym_key=deps.keys.pseudonym,
        pseudonym_epoch_s=cfg.privacy.pseudonym_epoch_s,
        reload=deps.reload,
        validate=functools.partial(_validate, view.config_path),
        doctor=None if view.doctor is None else _doctor(view.doctor, cfg),
        next_card=view.next_card,
        next_pin=view.next_pin,
        readers=list(cfg.readers),
        face_pipeline=OfficePipeline(cfg, view.pipeline).get,
        config_path=view.config_path,
        preview_detector=functools.partial(_preview_detector, cfg),
        totp_key=deps.keys.subkey(Purpose.WEB_TOTP),
        roster=RosterRole(cfg.roster.role, cfg.site.id, cfg.site.gate, cfg.roster.erasure_ack_s),
    )
    add_service(
        ServiceSpec("web-console", functools.partial(serve, backend, cfg.storage.state_dir))
    )


def _status(view: ConsoleView, controller: AccessController) -> dict[str, Any]:
    out = dict(view.health())
    out["doors"] = {n: d.controller.machine.state.value for n, d in controller.doors.items()}
    if view.broker_connected is None:
        out["broker"] = "not configured"
    else:
        out["broker"] = "connected" if view.broker_connected() else "disconnected"
    return out


def _doctor(
    rows: DoctorRows, cfg: GatewayConfig
) -> Callable[[], Awaitable[list[tuple[str, str, str]]]]:
    """The doctor's checks on a thread of their own (they wait on the network), one run
    at a time."""
    lock = asyncio.Lock()

    async def run() -> list[tuple[str, str, str]]:
        async with lock:
            return await asyncio.to_thread(rows, cfg)

    return run


def _validate(path: Path) -> list[str]:
    """The configuration file's problems, as ``gateway config validate`` lists them."""
    from gateway.services.zones import config_problems

    return config_problems(path)


def _notice(cfg: GatewayConfig) -> Notice:
    p = cfg.privacy
    if p.notice_file is None:
        raise GatewayError("no notice is configured ([privacy] notice_file)")
    return load_notice(p.notice_file, p.notice_version)


def _report_request(cfg: GatewayConfig) -> ReportRequest:
    ia = cfg.privacy.impact_assessment
    return ReportRequest(
        gate=cfg.site.gate,
        today=dt.datetime.now().astimezone().date(),
        thresholds=thresholds_of(cfg),
        retention=retention_policy(cfg),
        cameras=[
            compliance.CameraRecord(
                name, cam.space.value, cam.signage_installed, cam.signage_recorded or ""
            )
            for name, cam in cfg.cameras.items()
        ],
        assessment_ref=ia.reference if ia is not None else None,
        assessment_date=ia.date if ia is not None else None,
        template_protection=cfg.privacy.template_protection,
    )


def _preview_detector(cfg: GatewayConfig) -> Any:
    from gateway.services.zones import preview_detector

    return preview_detector(Path(cfg.face.model_dir))
