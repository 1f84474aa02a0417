"""Shutdown order: doors reach their safe state while services and reader buses still run;
services are cancelled and buses closed only afterwards."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.config.root import load_config
from gateway.daemon.process import Daemon
from gateway.daemon.supervisor import ServiceSpec


def test_safe_state_runs_before_services_stop_and_buses_close(minimal_config: Path) -> None:
    cfg = load_config(minimal_config, env=False)
    daemon = Daemon(minimal_config, cfg)
    order: list[str] = []
    bus_open = {"open": False}

    async def reader_service() -> None:
        bus_open["open"] = True
        try:
            await asyncio.Event().wait()
        finally:  # as the gateway's reader loop: cancelling it closes the bus
            bus_open["open"] = False
            order.append("bus closed")

    async def door_safe_state() -> None:
        await asyncio.sleep(0.05)
        order.append("door safe" if bus_open["open"] else "door: bus not started")

    async def close_readers() -> None:
        order.append("readers hook")

    async def setup(d: Daemon) -> None:
        d.add_service(ServiceSpec("reader-entry", reader_service, critical=True))
        d.on_safe_state("door-a", door_safe_state)
        d.on_safe_state("door-b", door_safe_state)
        d.on_shutdown("readers", close_readers)
        asyncio.get_running_loop().call_later(0.3, d.request_stop)

    code = asyncio.run(daemon.run(setup))
    assert code == 0
    assert order == ["door safe", "door safe", "bus closed", "readers hook"]


def test_config_reload_restart_takes_the_same_safe_path(minimal_config: Path) -> None:
    cfg = load_config(minimal_config, env=False)
    daemon = Daemon(minimal_config, cfg)
    order: list[str] = []
    text = minimal_config.read_text()

    async def service() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            order.append("service stopped")

    async def door_safe_state() -> None:
        order.append("door safe")

    async def reload_later(d: Daemon) -> None:
        await asyncio.sleep(0.3)
        changed = text.replace('reader = "entry"', 'reader = "entry"\nunlock_seconds = 7')
        await asyncio.to_thread(minimal_config.write_text, changed)
        assert await d.reload()

    async def setup(d: Daemon) -> None:
        d.add_service(ServiceSpec("reader-entry", service))
        d.on_safe_state("door-main", door_safe_state)
        asyncio.get_running_loop().create_task(reload_later(d))

    assert asyncio.run(daemon.run(setup)) == 0
    assert daemon.restart_requested
    assert order == ["door safe", "service stopped"]


def test_a_service_ignoring_its_cancel_does_not_keep_the_daemon_running(
    minimal_config: Path,
) -> None:
    """A stop completes within the shutdown limit even when a service swallows its
    cancel: the daemon names what was left running and still closes up."""
    cfg = load_config(minimal_config, env=False)
    daemon = Daemon(minimal_config, cfg)
    closed: list[str] = []
    release = {"now": False}

    async def stubborn() -> None:
        while not release["now"]:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:  # the defect this guards against
                continue

    async def close() -> None:
        closed.append("closed")

    async def setup(d: Daemon) -> None:
        d.add_service(ServiceSpec("stubborn", stubborn))
        d.on_shutdown("close", close)
        asyncio.get_running_loop().call_later(0.3, d.request_stop)

    runner = asyncio.Runner()
    t0 = time.monotonic()
    code = runner.run(daemon.run(setup))
    took = time.monotonic() - t0
    release["now"] = True
    runner.close()
    assert code == 0
    assert took < 0.3 + cfg.runtime.shutdown_timeout_s, took
    assert closed == ["closed"]
    assert any("stubborn" in name for name in daemon.stuck), daemon.stuck
