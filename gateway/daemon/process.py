"""The daemon: load config, open storage, run supervised services, handle signals.

SIGTERM/SIGINT stop it gracefully (outputs driven to their safe state) within the
configured timeout; SIGHUP reloads the configuration after validating it, keeping the old
one when the new file is broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import sqlite_utils

from gateway import __version__
from gateway.config.root import GatewayConfig, format_problems, load_config
from gateway.daemon import logs
from gateway.daemon.heap import freeze_startup_heap
from gateway.daemon.sdnotify import Notifier
from gateway.daemon.supervisor import RestartBudgetExhaustedError, ServiceSpec, Supervisor
from gateway.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

ShutdownHook = Callable[[], Awaitable[None]]
ReloadHook = Callable[[GatewayConfig], Awaitable[None]]
# Builds what the daemon runs (the gate: ``gateway.gate.app.build_gateway``) once the store
# is open: it registers its services and hooks with the daemon and returns the built object.
Build = Callable[["Daemon"], Awaitable[object]]


class Daemon:
    """One running gateway."""

    def __init__(self, config_path: Path, cfg: GatewayConfig) -> None:
        self.config_path = config_path
        self.cfg = cfg
        self.started = time.monotonic()
        self.notifier = Notifier()
        self.supervisor = Supervisor(
            budget=cfg.runtime.restart_budget, window=cfg.runtime.restart_window_s
        )
        self.db: sqlite_utils.Database | None = None
        self.storage_read_only: str | None = None  # why the store is read-only (DEGRADED)
        self._stop = asyncio.Event()
        self.restart_requested = False
        self.stuck: list[str] = []  # tasks still running after the stop's cancel
        self._shutdown_hooks: list[tuple[str, ShutdownHook]] = []
        self._safe_state_hooks: list[tuple[str, ShutdownHook]] = []
        self._reload_hooks: list[tuple[str, ReloadHook]] = []
        self.services: list[ServiceSpec] = []
        self.app: object | None = None  # what ``build`` returned (the gate), once running

    # -- wiring ---------------------------------------------------------------------------
    def add_service(self, spec: ServiceSpec) -> None:
        """Supervise one more service."""
        self.services.append(spec)

    def on_shutdown(self, name: str, hook: ShutdownHook) -> None:
        """Run ``hook`` at shutdown (drive outputs to their safe state, flush, close)."""
        self._shutdown_hooks.append((name, hook))

    def on_safe_state(self, name: str, hook: ShutdownHook) -> None:
        """Run ``hook`` first at shutdown, while every service and reader bus still runs
        (drive a door's outputs to their safe state); all such hooks run concurrently."""
        self._safe_state_hooks.append((name, hook))

    def on_reload(self, name: str, hook: ReloadHook) -> None:
        """Run ``hook`` with the new configuration after a successful reload."""
        self._reload_hooks.append((name, hook))

    def health(self) -> dict[str, object]:
        """Summary for the status topic and ``systemctl status``."""
        return {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "services": self.supervisor.health(),
        }

    def request_stop(self) -> None:
        """Ask the daemon to stop (signal handler)."""
        self._stop.set()

    def request_restart(self, why: str) -> None:
        """Stop safely and restart in place (same PID), e.g. to run with rotated keys."""
        log.info("restarting in place: %s", why)
        self.notifier.status(f"restarting: {why}")
        self.restart_requested = True
        self.request_stop()

    # -- lifecycle ------------------------------------------------------------------------
    async def reload(self) -> bool:
        """Re-read and validate the config file; keep the old one on any problem."""
        self.notifier.reloading()
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            log.error(
                "reload of %s refused, keeping the running configuration:\n%s",
                self.config_path,
                format_problems(exc.problems),
            )
            self.notifier.status("running (last reload refused: invalid configuration)")
            return False
        if new.model_dump() == self.cfg.model_dump():
            log.info("configuration in %s unchanged; nothing to reload", self.config_path)
            self.notifier.status("running (configuration unchanged)")
            return True
        if not self._reload_hooks:
            # Services hold what they were built from (zones, models, doors, readers): a
            # changed configuration is applied by restarting in place, after the same safe
            # shutdown as SIGTERM (outputs to their safe state, outbox kept on disk).
            log.info(
                "configuration reloaded from %s: valid and changed; restarting to apply it",
                self.config_path,
            )
            self.notifier.status("restarting to apply the new configuration")
            self.restart_requested = True
            self.request_stop()
            return True
        self.cfg = new
        for name, hook in self._reload_hooks:
            try:
                await hook(new)
            except Exception:
                log.exception("reload hook %s failed", name)
        log.info("configuration reloaded from %s", self.config_path)
        self.notifier.status("running (configuration reloaded)")
        return True

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval()
        if interval is None:
            await asyncio.Event().wait()
            return
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _maintenance(self) -> None:
        while True:
            await asyncio.sleep(300)
            if self.db is not None and self.storage_read_only is None:
                await asyncio.to_thread(self.db.execute, "PRAGMA wal_checkpoint(PASSIVE)")

    async def _drive_safe_state(self) -> None:
        """Outputs to their safe state before anything is stopped or closed."""
        self.notifier.stopping()
        limit = self.cfg.runtime.shutdown_timeout_s / 2

        async def one(name: str, hook: ShutdownHook) -> None:
            try:
                async with asyncio.timeout(limit):
                    await hook()
            except Exception:
                log.exception("safe-state step %s failed", name)

        await asyncio.gather(*(one(n, h) for n, h in self._safe_state_hooks))

    async def _services_stopped(self, supervised: asyncio.Task[None]) -> None:
        """Wait for the cancelled services, at most half the shutdown limit: a task that
        ignores its cancel must not keep the daemon from stopping (it is named in the log
        and :func:`run_daemon` then exits without waiting for it)."""
        limit = self.cfg.runtime.shutdown_timeout_s / 2
        await asyncio.wait({supervised}, timeout=limit)
        if supervised.done():
            if not supervised.cancelled():
                supervised.exception()  # retrieved (the failure was logged above)
            return
        me = asyncio.current_task()
        self.stuck = sorted(t.get_name() for t in asyncio.all_tasks() if t is not me)
        log.error(
            "services still running %.1f s after the stop: %s; stopping without them",
            limit,
            ", ".join(self.stuck),
        )

    async def _shutdown(self) -> None:
        for name, hook in reversed(self._shutdown_hooks):
            try:
                async with asyncio.timeout(self.cfg.runtime.shutdown_timeout_s / 2):
                    await hook()
            except Exception:
                log.exception("shutdown step %s failed", name)
        if self.db is not None:
            with contextlib.suppress(Exception):
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.close()
            self.db = None

    async def run(self, build: Build) -> int:
        """Hold the state directory's lock (:func:`gateway.keys.state_lock`: no key rotation
        while the daemon holds the keys in memory), then :meth:`_run`."""
        from gateway.keys import StateLockedError, state_lock

        try:
            with state_lock(self.cfg.storage.state_dir) as locked:
                if not locked:
                    log.warning(
                        "cannot lock %s: key rotations are not kept out", self.cfg.storage.state_dir
                    )
                return await self._run(build)
        except StateLockedError as exc:
            log.critical("refusing to start: %s (a running daemon or a key rotation)", exc)
            return EXIT_FAILURE

    async def _run(self, build: Build) -> int:
        """Build the application, run it until a stop signal; return the exit code."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(
            signal.SIGHUP, lambda: loop.create_task(self.reload(), name="reload")
        )
        try:
            # Decisions read through this connection: a database locked from outside must
            # not hold them up for long (writes then fail fast and are kept in memory).
            from gateway.store.readonly import open_state

            self.db, self.storage_read_only = await asyncio.to_thread(
                open_state, self.cfg.storage.database_path, busy_timeout_ms=1000
            )
        except StorageError as exc:
            log.critical("%s", exc)
            return EXIT_FAILURE
        self.add_service(ServiceSpec("watchdog", self._watchdog, critical=True))
        self.add_service(ServiceSpec("storage-maintenance", self._maintenance))
        self.app = await build(self)
        freeze_startup_heap("daemon")
        supervised = asyncio.create_task(self.supervisor.run(self.services), name="supervisor")
        stopper = asyncio.create_task(self._stop.wait(), name="stop-signal")
        self.notifier.ready(
            f"running: {len(self.cfg.doors)} door(s), {len(self.cfg.cameras)} camera(s)"
        )
        log.info(
            "access-gateway %s running for site %s gate %s (%d services)",
            __version__,
            self.cfg.site.id,
            self.cfg.site.gate,
            len(self.services),
        )
        code = EXIT_OK
        done, _ = await asyncio.wait({supervised, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if supervised in done:
            failure = supervised.exception()
            if failure is not None:
                budget = [e for e in _leaves(failure) if isinstance(e, RestartBudgetExhaustedError)]
                log.critical("stopping: %s", budget[0] if budget else failure)
                code = EXIT_FAILURE
        else:
            log.info("stop requested; shutting down")
        stopper.cancel()
        await self._drive_safe_state()
        supervised.cancel()
        await self._services_stopped(supervised)
        await self._shutdown()
        log.info("stopped")
        return code


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for e in exc.exceptions:
            out.extend(_leaves(e))
        return out
    return [exc]


def run_daemon(config_path: Path, build: Build) -> int:
    """Validate the configuration, then run the daemon with what ``build`` makes of it
    (``gateway run``)."""
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        logs.setup()
        print(format_problems(exc.problems), file=sys.stderr, flush=True)
        log.critical("refusing to start: invalid configuration in %s", config_path)
        return EXIT_CONFIG
    logs.setup(cfg.runtime.log_level, cfg.runtime.log_format)
    daemon = Daemon(config_path, cfg)
    runner = asyncio.Runner()
    code = runner.run(daemon.run(build))
    if not daemon.stuck:
        runner.close()  # cancels and awaits what is left: nothing ignores its cancel
    if code == 0 and daemon.restart_requested:
        # Same PID (systemd keeps tracking it; the new image sends READY=1 again).
        log.info("restarting in place (same PID)")
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, "-m", "gateway", *sys.argv[1:]])  # noqa: S606
    if daemon.stuck:  # the loop still holds a task that ignores cancellation: do not wait
        logging.shutdown()
        os._exit(code)
    return code
