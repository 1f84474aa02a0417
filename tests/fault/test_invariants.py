"""The fault suite's checker catches what it must: a door left unlocked, a slow or missing
opening, a revoked card that opens, a lost event, a grant to the revoked person. A scripted
fake simulator and daemon log stand in for the gate (no daemon, no broker: fast)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_secret
from tests.fault.invariants import REVOKED_CARD, VALID_CARD, Invariants, RelayWatch

pytestmark = [pytest.mark.fault]

UNLOCK_S = 0.5  # so that the relock limit is 1.5 s


class FakeSim:
    """Relay and decisions scripted per card number: ``(delay_s, hold_s or None)``; a
    hold of None never relocks. Each presentation logs one decision after ``log_after``."""

    def __init__(self, log: Path, script: dict[int, tuple[float, float | None]]) -> None:
        self.log = log
        self.script = script
        self.relay = False
        self.log_after = 0.05

    def do(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        card = int(args.get("card", -1))
        granted = card in self.script
        kind = "granted" if granted else "denied"
        threading.Timer(self.log_after, self._log, (kind,)).start()
        if granted:
            delay, hold = self.script[card]
            threading.Timer(delay, self._set, (True,)).start()
            if hold is not None:
                threading.Timer(delay + hold, self._set, (False,)).start()
        return {"ok": True}

    def _log(self, kind: str) -> None:
        with self.log.open("a") as fh:
            fh.write(f"x INFO gateway.gate.events_sink: gate gate-1: event access.{kind}\n")

    def _set(self, on: bool) -> None:
        self.relay = on

    def state(self) -> dict[str, Any]:
        return {"doors": {"main": {"relay": self.relay}}}


class FakeStack:
    def __init__(self, config: Path, workdir: Path, sim: FakeSim, site_key: Path) -> None:
        self.config_path = config
        self.workdir = workdir
        self.sim = sim
        self.keys = {"site": site_key}
        self.mqtt_url = "mqtt://127.0.0.1:1"

    def daemon_log_tail(self, lines: int = 40) -> str:
        return "(fake)"


def _checker(
    tmp_path: Path, minimal_config: Path, script: dict[int, tuple[float, float | None]]
) -> Invariants:
    text = minimal_config.read_text().replace(
        "[doors.main]\n", f"[doors.main]\nunlock_seconds = {UNLOCK_S}\n"
    )
    minimal_config.write_text(text)
    site_key = write_secret(tmp_path / "keys" / "site-key", secrets.token_bytes(32))
    sim = FakeSim(tmp_path / "daemon.log", script)
    stack = FakeStack(minimal_config, tmp_path, sim, site_key)
    inv = Invariants(stack, revoked_person="p-revoked", door="main", decision_timeout_s=2.0)
    inv.relay.start()
    return inv


def _run(inv: Invariants, coro: Any) -> None:
    try:
        asyncio.run(coro)
    finally:
        inv.relay.stop()


def _event(type_: str, method: str, person: str | None = None) -> bytes:
    body = {
        "type": type_,
        "id": str(uuid.uuid4()),
        "ts": "2026-12-05T12:00:00.000Z",
        "door": "main",
        "method": method,
        "person": person,
    }
    return json.dumps(body).encode()


def test_a_good_gate_holds(tmp_path: Path, minimal_config: Path) -> None:
    inv = _checker(tmp_path, minimal_config, {VALID_CARD.number: (0.2, UNLOCK_S)})

    async def main() -> None:
        await inv.round("good", wrong_pin=True)
        for _ in range(2):  # one redelivery: the same id twice counts once
            inv.events._add(_event("access.denied", "pin"))
        payload = _event("access.granted", "card")
        inv.events._add(payload)
        inv.events._add(payload)
        inv.events._add(_event("access.denied", "card"))
        await inv.no_event_lost(0.5)

    _run(inv, main())
    inv.assert_held()
    assert inv.expected == {
        ("access.denied", "pin"): 1,
        ("access.denied", "card"): 1,
        ("access.granted", "card"): 1,
    }


def test_slow_opening_and_stuck_relay_are_violations(tmp_path: Path, minimal_config: Path) -> None:
    inv = _checker(tmp_path, minimal_config, {VALID_CARD.number: (1.3, None)})

    async def main() -> None:
        await inv.valid_card_opens("slow and stuck")

    start = time.monotonic()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("tests.fault.invariants.STUCK_WAIT_S", 0.1)
        _run(inv, main())
    assert time.monotonic() - start < 10
    with pytest.raises(AssertionError) as err:
        inv.assert_held()
    text = str(err.value)
    assert re.search(r"opened door main only after 1\.\d\d s", text), text
    assert "still unlocked" in text


def test_revoked_card_that_opens_and_lost_events_are_violations(
    tmp_path: Path, minimal_config: Path
) -> None:
    inv = _checker(tmp_path, minimal_config, {REVOKED_CARD.number: (0.1, UNLOCK_S)})

    async def main() -> None:
        await inv.revoked_card_never_opens("revoked")
        await inv.no_event_lost(0.3)

    _run(inv, main())
    with pytest.raises(AssertionError) as err:
        inv.assert_held()
    text = str(err.value)
    assert "the revoked card opened door main" in text
    assert "events lost" in text


def test_a_grant_to_the_revoked_person_is_a_violation(tmp_path: Path, minimal_config: Path) -> None:
    from gateway.mqtt.pseudonym import epoch_of, pseudonym

    inv = _checker(tmp_path, minimal_config, {})
    inv.relay.stop()
    ts = dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC).timestamp()  # the fake events' ts
    key = inv.pseudonym_key
    inv.events._add(_event("access.granted", "card", pseudonym("p-other", key, epoch_of(ts))))
    assert inv.revoked_grants() == 0
    inv.events._add(_event("access.granted", "card", pseudonym("p-revoked", key, epoch_of(ts))))
    assert inv.revoked_grants() == 1
    with pytest.raises(AssertionError, match=r"access\.granted event"):
        inv.assert_held()


def test_relay_watch_keeps_every_interval() -> None:
    class Sim:
        relay = False

        def state(self) -> dict[str, Any]:
            return {"doors": {"d": {"relay": self.relay}}}

    sim = Sim()
    watch = RelayWatch(sim, "d", period_s=0.01).start()
    try:
        t0 = time.monotonic()
        for _ in range(2):
            sim.relay = True
            time.sleep(0.1)
            assert watch.on_since() is not None
            sim.relay = False
            time.sleep(0.1)
    finally:
        watch.stop()
    snap = watch.snapshot()
    assert len(snap) == 2
    assert all(off is not None and 0.05 < off - on < 0.2 for on, off in snap)
    assert watch.first_on_after(t0) == snap[0]
    assert watch.on_since() is None
