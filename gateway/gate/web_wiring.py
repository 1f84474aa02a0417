"""Wire the web console into the daemon when ``[web] enabled``: its backend (the gate's
database threads, credential store, vault, gallery, notice, compliance inputs) and a
supervised, non-critical service that serves it."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.config.root import GatewayConfig
from gateway.daemon.supervisor import ServiceSpec
from gateway.errors import GatewayError
from gateway.gate.remote_commands import CommandDeps
from gateway.gate.withdrawal_announce import GateWithdrawals
from gateway.privacy import compliance
from gateway.privacy.notice import Notice, load_notice
from gateway.privacy.scrub import scrub_in_background
from gateway.services.compliance import ReportRequest, retention_policy
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


def add_web_console(
    deps: CommandDeps,
    withdrawals: GateWithdrawals,
    add_service: Callable[[ServiceSpec], None],
    read_only: str | None,
) -> None:
    """Register the console's service (nothing when ``[web]`` is not enabled). ``deps``:
    the running gate's parts, as the signed commands use them; ``withdrawals``: the gate's
    withdrawals (erase, announce to the site's other gates, scrub); ``read_only``: why the
    storage is read-only (DEGRADED), else None."""
    cfg = deps.cfg
    if not cfg.web.enabled:
        return
    from gateway.web.backend import Backend
    from gateway.web.server import serve

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
    )
    add_service(
        ServiceSpec("web-console", functools.partial(serve, backend, cfg.storage.state_dir))
    )


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
        thresholds=compliance.Thresholds(),
        retention=retention_policy(cfg),
        cameras=[
            compliance.CameraRecord(
                name, cam.space.value, cam.signage_installed, cam.signage_recorded or ""
            )
            for name, cam in cfg.cameras.items()
        ],
        assessment_ref=ia.reference if ia is not None else None,
        assessment_date=ia.date if ia is not None else None,
    )
