"""A gate for the fault suite: simulator, the real daemon (own process, optionally started
inside a mount namespace) and a real Mosquitto, provisioned with a valid card and a card
that is revoked before any fault is injected.

The daemon runs card/PIN only (no face models: the faults under test are about the door,
the credential store, the outbox and the broker, and the face path would only load the
2-core CI machine). Everything else is the demo configuration of ``gateway.demo.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from gateway.demo.run import DemoStack
from tests.fault.invariants import REVOKED_CARD, VALID_CARD, Card, Invariants
from tests.mosquitto import Mosquitto

VALID_PERSON = "fault-valid"
REVOKED_PERSON = "fault-revoked"
#: How long a started daemon gets to log both readers online.
READERS_ONLINE_S = 20.0
#: Both cards were enrolled this long before the test (a resident's card is not new): a
#: gate may refuse a credential changed *recently* while it cannot prove its cache current
#: (issue 18 #3), and the valid card must not fall under that rule.
ENROLLED_AGO_S = 7 * 86_400.0


def fixtures(valid: Card = VALID_CARD, revoked: Card = REVOKED_CARD) -> dict[str, Any]:
    """Two residents: one keeps its card, the other's card is revoked before the fault."""
    return {
        "people": [
            {
                "name": VALID_PERSON,
                "face": False,
                "card": {"facility": valid.facility, "number": valid.number},
            },
            {
                "name": REVOKED_PERSON,
                "face": False,
                "card": {"facility": revoked.facility, "number": revoked.number},
            },
        ]
    }


class FaultStack(DemoStack):
    """A DemoStack whose daemon command can be prefixed (``launcher``), e.g. with
    ``unshare -m sh -c '<mounts>; exec "$@"' sh``, to run it against a read-only or a tiny
    state directory while the simulator and the broker stay outside."""

    def __init__(self, broker: Mosquitto, workdir: Path) -> None:
        async def control(step: str) -> None:
            if step == "stop_broker":
                await asyncio.to_thread(broker.stop)
            else:
                await asyncio.to_thread(broker.start)

        super().__init__(
            mqtt_url=f"mqtt://127.0.0.1:{broker.port}",
            broker_control=control,
            workdir=workdir,
            print_events=False,
        )
        self.broker = broker
        self.launcher: Sequence[str] = ()
        # No face models: the daemon logs "face path disabled, PIN and card unaffected".
        self.model_dir = workdir / "no-face-models"

    @property
    def db_path(self) -> Path:
        """The daemon's state database."""
        return self.state_dir / "state.db"

    def person_id(self, name: str) -> str:
        """The id a provisioned person got."""
        return self._people[name]

    async def start_daemon(self, limit_s: float = 60.0) -> None:
        """``gateway run`` (behind ``launcher`` when set); wait until it is ready and has
        both readers online (the simulator's own state still says "online" from a previous
        run of the daemon, so this run's log is what counts)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        log_path = self.workdir / "daemon.log"
        offset = self._daemon_mark = log_path.stat().st_size if log_path.exists() else 0
        cmd = [*self.launcher, sys.executable, "-m", "gateway", "--config", str(self.config_path)]
        with log_path.open("ab") as logf:
            self.proc = await asyncio.to_thread(
                subprocess.Popen, [*cmd, "run"], stdout=logf, stderr=subprocess.STDOUT, env=env
            )
        started = time.monotonic()
        deadline = started + limit_s
        ready = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited early:\n{self.daemon_log_tail()}")
            with log_path.open("rb") as fh:
                fh.seek(offset)
                text = fh.read().decode(errors="replace")
            ready = ready or ("subsystems wired" in text and "running for site" in text)
            if ready and all(f"reader {r}: online" in text for r in ("entry", "side")):
                return
            if ready and time.monotonic() > started + READERS_ONLINE_S:
                return  # readers slow (or logged differently): the checks will say
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the daemon did not become ready:\n{self.daemon_log_tail()}")

    def log_size(self) -> int:
        """The daemon log's size now (an offset for :meth:`wait_for_log`)."""
        path = self.workdir / "daemon.log"
        return path.stat().st_size if path.exists() else 0

    async def wait_for_log(self, text: str, offset: int, within_s: float) -> bool:
        """Wait until ``text`` appears in the daemon log after ``offset``."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            with (self.workdir / "daemon.log").open("rb") as fh:
                fh.seek(offset)
                if text in fh.read().decode(errors="replace"):
                    return True
            await asyncio.sleep(0.1)
        return False

    async def kill(self, sig: int) -> None:
        """Send ``sig`` to the daemon and wait for it to exit (SIGKILL after 15 s)."""
        proc = self.proc
        assert proc is not None, "the daemon is not running"
        proc.send_signal(sig)
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 5)

    def in_daemon_namespace(self, path: Path) -> Path:
        """``path`` as the daemon sees it (through /proc/PID/root: its mount namespace)."""
        assert self.proc is not None
        return Path(f"/proc/{self.proc.pid}/root") / path.relative_to("/")


@contextlib.asynccontextmanager
async def provisioned_gate(broker: Mosquitto, workdir: Path) -> AsyncIterator[FaultStack]:
    """Simulator started, config written and both residents provisioned (the daemon is NOT
    started: the test starts it, possibly behind a launcher). Stops everything on exit."""
    stack = FaultStack(broker, workdir)
    await asyncio.to_thread(stack.start_sim)
    try:
        stack.write_config()
        await asyncio.to_thread(stack._provision, fixtures())
        await asyncio.to_thread(_backdate_enrolment, stack.db_path, ENROLLED_AGO_S)
        yield stack
    finally:
        await stack.stop_daemon()
        if stack.proc is not None and stack.proc.poll() is None:
            stack.proc.kill()
        await asyncio.to_thread(stack.stop_sim)


def _backdate_enrolment(db: Path, seconds: float) -> None:
    """Move the people's and cards' creation times ``seconds`` into the past."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE people SET created_at = created_at - ?", [seconds])
        conn.execute("UPDATE cards SET created_at = created_at - ?", [seconds])
        conn.execute("COMMIT")
    finally:
        conn.close()


async def revoke_card_over_mqtt(stack: FaultStack, person: str = REVOKED_PERSON) -> None:
    """Revoke every card of ``person`` with the signed ``revoke_card`` command, as the
    management system does (the path that bypassed the credential cache, issue 18 #3)."""
    body = await stack.command(
        "revoke_card", {"person_ref": stack.person_ref(stack.person_id(person))}
    )
    result = body.get("result", body)
    revoked = result.get("revoked") if isinstance(result, dict) else None
    assert revoked == 1, f"revoke_card did not revoke exactly one card: {body}"


async def started_with_revocation(stack: FaultStack) -> Invariants:
    """Start the daemon, revoke the second card over MQTT; the checker for the test."""
    await stack.start_daemon()
    await revoke_card_over_mqtt(stack)
    return Invariants(stack, revoked_person=stack.person_id(REVOKED_PERSON))
