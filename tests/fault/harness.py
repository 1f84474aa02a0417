"""A small harness for fault-injection tests: the real daemon (own process), the hardware
simulator and a real Mosquitto, through :class:`gateway.demo.run.DemoStack`.

    async with fault_stack(broker, tmp_path) as fs:
        await fs.present_card()
        await fs.wait_relay(True, within=2)
        await fs.kill()                       # kill -9 (or fs.kill(signal.SIGTERM))
        await fs.wait_relay(False, within=6)
        await fs.start_daemon()

The daemon gets an empty model folder (face path disabled: it starts in a few seconds;
card and PIN are all these tests need). One resident with card ``CARD`` (facility
``FACILITY``) is provisioned. Every wait is bounded and fails with the daemon's log tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.demo.run import DemoStack
from tests.mosquitto import Mosquitto

CARD = 42424
FACILITY = 10
DOOR = "main-gate"
READER = "entry"


class FaultStack:
    """Simulator + daemon process + broker, with waits on what the hardware does."""

    def __init__(self, broker: Mosquitto, workdir: Path) -> None:
        self.broker = broker

        async def control(step: str) -> None:
            await asyncio.to_thread(broker.stop if step == "stop_broker" else broker.start)

        self.stack = DemoStack(
            mqtt_url=f"mqtt://127.0.0.1:{broker.port}",
            broker_control=control,
            workdir=workdir,
            print_events=False,
        )
        self.workdir = workdir
        self.log_path = workdir / "daemon.log"

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Simulator, config (no face models), one card holder, the daemon."""
        await asyncio.to_thread(self.stack.start_sim)
        empty = self.workdir / "no-models"
        empty.mkdir(exist_ok=True)
        self.stack.model_dir = empty
        self.stack.write_config()
        people = [{"name": "fault-resident", "card": {"facility": FACILITY, "number": CARD}}]
        await asyncio.to_thread(self.stack._provision, {"people": people})
        await self.start_daemon()

    async def start_daemon(self) -> None:
        """Start the daemon process and wait until it is ready and its readers are online."""
        offset = self.log_size()
        await self.stack.start_daemon(limit_s=45)
        await self.wait_reader_online(READER, within=15, offset=offset)

    async def kill(self, sig: int = signal.SIGKILL, wait_s: float = 15.0) -> int | None:
        """Send ``sig`` to the daemon and wait for it to exit; its exit code."""
        proc = self.stack.proc
        assert proc is not None, "the daemon is not running"
        proc.send_signal(sig)
        try:
            return await asyncio.to_thread(proc.wait, wait_s)
        except Exception:  # noqa: BLE001 - a hung daemon is a test failure, not a hang
            proc.kill()
            raise AssertionError(f"the daemon did not exit on {sig}\n{self.log_tail()}") from None

    async def close(self) -> None:
        """Stop the daemon (SIGTERM) and the simulator."""
        with contextlib.suppress(Exception):
            await self.stack.stop_daemon()
        await asyncio.to_thread(self.stack.stop_sim)

    # -- observation ----------------------------------------------------------------------
    async def state(self) -> dict[str, Any]:
        """The simulator's observable hardware."""
        st: dict[str, Any] = await asyncio.to_thread(self.stack.sim.state)
        return st

    async def relay(self, door: str = DOOR) -> bool:
        """Whether the door's relay is energised right now."""
        return bool((await self.state())["doors"][door]["relay"])

    async def wait_relay(self, on: bool, within: float, door: str = DOOR) -> float:
        """Wait until the relay is ``on``; the seconds it took (AssertionError after
        ``within``)."""
        t0 = time.monotonic()
        while True:
            if await self.relay(door) is on:
                return time.monotonic() - t0
            if time.monotonic() - t0 > within:
                raise AssertionError(
                    f"relay of {door} still {'off' if on else 'on'} after {within:.1f} s\n"
                    + self.log_tail()
                )
            await asyncio.sleep(0.05)

    async def relay_stays(self, on: bool, for_s: float, door: str = DOOR) -> None:
        """The relay keeps the level ``on`` for ``for_s`` seconds."""
        deadline = time.monotonic() + for_s
        while time.monotonic() < deadline:
            assert await self.relay(door) is on, (
                f"relay of {door} changed to {not on}\n" + self.log_tail()
            )
            await asyncio.sleep(0.05)

    async def reader_online(self, name: str = READER) -> bool:
        """Whether the simulated PD is answering (and secure)."""
        return bool((await self.state())["readers"][name]["online"])

    async def wait_reader_online(
        self, name: str = READER, within: float = 10.0, offset: int = 0
    ) -> float:
        """Wait until the gateway logged the reader online (after log ``offset``) and the
        PD answers; the seconds it took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 <= within:
            if await self.reader_online(name) and f"reader {name}: online" in self.log(offset):
                return time.monotonic() - t0
            await asyncio.sleep(0.1)
        raise AssertionError(f"reader {name} not online after {within:.1f} s\n{self.log_tail()}")

    def output_commands(self, name: str = READER) -> list[tuple[float, dict[str, Any]]]:
        """Output commands the simulated PD received (time, command)."""
        reader = self.stack.sim.readers[name]
        with reader._lock:
            history = list(reader.history)
        return [(t, d) for t, kind, d in history if kind == "output"]

    def log(self, offset: int = 0) -> str:
        """The daemon's log from byte ``offset``."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def log_size(self) -> int:
        """Current length of the daemon's log (an offset for :meth:`log`)."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_tail(self, lines: int = 40) -> str:
        """The end of the daemon's log."""
        return self.stack.daemon_log_tail(lines)

    # -- actions --------------------------------------------------------------------------
    async def sim(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """One simulator action (``cut-link``, ``corrupt-frames``, ``present-card``...)."""
        out: dict[str, Any] = await asyncio.to_thread(self.stack.sim.do, action, args)
        return out

    async def present_card(self, card: int = CARD, reader: str = READER) -> None:
        """Present a card at a reader."""
        await self.sim("present-card", {"reader": reader, "card": card, "facility": FACILITY})

    async def card_opens(self, within: float = 1.5, door: str = DOOR) -> float:
        """Present the valid card; the relay must energise within ``within`` seconds."""
        await self.present_card()
        return await self.wait_relay(True, within, door)

    async def remote_unlock(self, seconds: float, door: str = DOOR) -> None:
        """Signed MQTT ``unlock`` command, as the management system sends it."""
        await self.stack.command("unlock", {"door": door, "seconds": seconds})


@contextlib.asynccontextmanager
async def fault_stack(broker: Mosquitto, workdir: Path) -> AsyncIterator[FaultStack]:
    """A started :class:`FaultStack`; stopped on exit."""
    fs = FaultStack(broker, workdir)
    try:
        await fs.start()
        yield fs
    finally:
        await fs.close()
