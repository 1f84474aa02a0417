"""The fault suite's four invariants, checked on a running ``gateway.demo.run.DemoStack``.

After (and while) a fault is injected:

1. **door locked**: every relay-on interval of the door ends within
   ``unlock_seconds + 1 s`` (a :class:`RelayWatch` samples the simulator's relay at 50 Hz
   for the whole test, daemon alive or not);
2. **valid card opens**: a valid card presented at the door's reader energises the relay
   within 1 s;
3. **revoked card never opens**: no relay-on from presenting a revoked card until its
   decision has been made (and 1 s after), and no ``access.granted`` event anywhere in the
   test whose pseudonym resolves (with the site key) to the revoked person;
4. **no event lost**: every access decision the test caused reaches the broker, at least
   once: the number of distinct event ids (``access.granted`` or ``access.denied``) per
   method received by a persistent subscriber (session kept across broker restarts) is at
   least the number of presentations with that method.

A decision is "made" when the daemon logs ``gate G: event access.granted|denied`` (its log
is the one place that sees decisions while storage and broker are both down); when that
line does not come within ``decision_timeout_s`` the check goes on and says so.

Usage::

    async with Invariants(stack, revoked_person=pid) as inv:
        await inv.round("healthy", revoked=False)
        ...  # inject the fault
        await inv.round("during the fault", wrong_pin=True)
        ...  # clear it
        await inv.round("after the fault")
        await inv.no_event_lost(within_s=10.0)
    inv.assert_held()

Violations are collected (a round goes on after one, so that the report names all of
them); :meth:`Invariants.assert_held` raises with the list and the daemon log's tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiomqtt

from gateway.demo.run import GATE, PREFIX, SITE

#: The margin the acceptance gives the relock: ``unlock_seconds + 1 s``.
RELOCK_MARGIN_S = 1.0
#: A valid card opens within this long.
OPEN_WITHIN_S = 1.0
#: After a door failed to relock in time, how long to wait for it before going on.
STUCK_WAIT_S = 10.0
#: After a late decision, how long its relay action takes to show in the simulator.
SETTLE_S = 1.0
_DECISION = re.compile(rb"gate \S+: event access\.(granted|denied)")


@dataclass(frozen=True)
class Card:
    """A card as the simulated reader presents it."""

    facility: int
    number: int

    def present_args(self, reader: str) -> dict[str, Any]:
        return {"reader": reader, "card": self.number, "facility": self.facility}


VALID_CARD = Card(10, 31337)
REVOKED_CARD = Card(10, 4242)
WRONG_PIN = "8642"


class RelayWatch:
    """Samples one door's relay in the simulator every ``period_s`` (a thread) and keeps
    every on-interval as ``[t_on, t_off or None]`` in ``time.monotonic()`` seconds."""

    def __init__(self, sim: Any, door: str, period_s: float = 0.02) -> None:
        self.sim = sim
        self.door = door
        self.period_s = period_s
        self.intervals: list[list[float | None]] = []
        self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"relay-watch-{door}", daemon=True)

    def start(self) -> RelayWatch:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _sample(self) -> None:
        try:
            on = bool(self.sim.state()["doors"][self.door]["relay"])
        except Exception:  # noqa: BLE001 - a simulator hiccup is one missed sample
            self.errors += 1
            return
        now = time.monotonic()
        with self._lock:
            last = self.intervals[-1] if self.intervals else None
            if on and (last is None or last[1] is not None):
                self.intervals.append([now, None])
            elif not on and last is not None and last[1] is None:
                last[1] = now

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def snapshot(self) -> list[tuple[float, float | None]]:
        with self._lock:
            return [(float(a or 0.0), b) for a, b in self.intervals]

    def on_since(self) -> float | None:
        """When the relay went on, if it is on now."""
        snap = self.snapshot()
        return snap[-1][0] if snap and snap[-1][1] is None else None

    def first_on_after(self, t: float) -> tuple[float, float | None] | None:
        """The first on-interval that starts at or after ``t``."""
        return next(((a, b) for a, b in self.snapshot() if a >= t), None)


class EventLog:
    """Every event of the gate, by id, from a persistent MQTT session (QoS 1, clean session
    off) that survives broker restarts: events published while it reconnects are queued
    by the broker for it."""

    def __init__(self, mqtt_url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(mqtt_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 1883
        self.topic = f"{PREFIX}/{SITE}/{GATE}/events/#"
        self.identifier = f"fault-events-{secrets.token_hex(4)}"
        self.by_id: dict[str, dict[str, Any]] = {}
        self.received = 0
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, limit_s: float = 10.0) -> None:
        self._task = asyncio.create_task(self._run(), name="fault-event-log")
        async with asyncio.timeout(limit_s):
            await self._subscribed.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.identifier,
                    clean_session=False,
                    protocol=aiomqtt.ProtocolVersion.V311,
                    keepalive=5,
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self._subscribed.set()
                    async for msg in client.messages:
                        self._add(bytes(msg.payload))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def _add(self, payload: bytes) -> None:
        self.received += 1
        try:
            body = json.loads(payload)
        except ValueError:
            return
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            self.by_id.setdefault(body["id"], body)

    def distinct(self, door: str) -> Counter[tuple[str, str]]:
        """Distinct access decisions per (type, method) at ``door``."""
        return Counter(
            (str(e.get("type")), str(e.get("method")))
            for e in self.by_id.values()
            if str(e.get("type", "")).startswith("access.") and e.get("door") == door
        )

    def decisions(self, door: str) -> Counter[str]:
        """Distinct access decisions (granted or denied) per method at ``door``."""
        return Counter(method for (_type, method) in self.distinct(door).elements())


def _event_epoch(event: dict[str, Any], epoch_s: int) -> int:
    ts = str(event.get("ts", "")).replace("Z", "+00:00")
    try:
        when = dt.datetime.fromisoformat(ts).timestamp()
    except ValueError:
        when = time.time()
    return int(when // epoch_s)


class Invariants:
    """The four invariants of issue 18's fault suite on one door of a running stack."""

    def __init__(
        self,
        stack: Any,
        *,
        revoked_person: str | None,
        door: str = "main-gate",
        reader: str = "entry",
        valid: Card = VALID_CARD,
        revoked: Card = REVOKED_CARD,
        decision_timeout_s: float = 5.0,
    ) -> None:
        from gateway.config.root import load_config

        cfg = load_config(stack.config_path, env=False)
        self.stack = stack
        self.door = door
        self.reader = reader
        self.valid = valid
        self.revoked = revoked
        self.revoked_person = revoked_person
        self.unlock_seconds = float(cfg.doors[door].unlock_seconds)
        self.limit_s = self.unlock_seconds + RELOCK_MARGIN_S
        self.epoch_s = int(cfg.privacy.pseudonym_epoch_s)
        from gateway.config.base import secret_bytes
        from gateway.keys import Purpose, subkey_of

        site = secret_bytes(stack.keys["site"].read_bytes())
        self.pseudonym_key: bytes = subkey_of(site, Purpose.PSEUDONYM)  # as the office derives it
        self.decision_timeout_s = decision_timeout_s
        self.expected: Counter[tuple[str, str]] = Counter()
        self.presented = 0  # presentations whose decision the daemon's log must show
        self._baseline = 0
        self._stuck: set[float] = set()  # on-intervals (by start) reported as not relocked
        self.violations: list[str] = []
        self.notes: list[str] = []
        self.events = EventLog(stack.mqtt_url)
        self.relay = RelayWatch(stack.sim, door)

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Invariants:
        self._baseline = self.decisions_logged()
        self.relay.start()
        await self.events.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.relay.stop()
        await self.events.stop()

    def violation(self, label: str, what: str) -> None:
        self.violations.append(f"[{label}] {what}")

    # -- the daemon's decisions --------------------------------------------------------------
    def decisions_logged(self) -> int:
        """How many access decisions the daemon has logged so far (all its runs)."""
        path = Path(self.stack.workdir) / "daemon.log"
        try:
            return len(_DECISION.findall(path.read_bytes()))
        except OSError:
            return 0

    def resync(self) -> None:
        """Forget presentations the daemon never decided (call after killing it)."""
        self._baseline = self.decisions_logged() - self.presented

    def _pending(self) -> int:
        return self._baseline + self.presented - self.decisions_logged()

    async def _await_decisions(self, label: str, what: str) -> float | None:
        """Wait until the daemon has logged a decision for every presentation so far (so
        that a late decision is never taken for the next presentation's); its time, or
        None after ``decision_timeout_s``."""
        deadline = time.monotonic() + self.decision_timeout_s
        while time.monotonic() < deadline:
            if self._pending() <= 0:
                return time.monotonic()
            await asyncio.sleep(0.05)
        self.notes.append(
            f"[{label}] no decision logged for {what} within {self.decision_timeout_s:.0f} s"
        )
        return None

    async def _present(self, action: str, args: dict[str, Any]) -> float:
        """Carry out one presentation (one decision expected); when it was made."""
        t0 = time.monotonic()
        await asyncio.to_thread(self.stack.sim.do, action, args)
        self.presented += 1
        return t0

    # -- the checks ----------------------------------------------------------------------------
    async def door_locked(self, label: str) -> None:
        """Invariant 1 now: the relay is off, or goes off within the limit of going on."""
        since = self.relay.on_since()
        if since is None or since in self._stuck:
            return  # locked, or already reported stuck (said once, not once per check)
        while time.monotonic() < since + self.limit_s + 0.2:
            if self.relay.on_since() is None:
                break
            await asyncio.sleep(0.05)
        snap = [iv for iv in self.relay.snapshot() if iv[0] == since]
        off = snap[0][1] if snap else None
        if off is None or off - since > self.limit_s:
            self._stuck.add(since)
            held = (off or time.monotonic()) - since
            self.violation(
                label,
                f"door {self.door} still unlocked {held:.1f} s after the relay went on "
                f"(limit unlock_seconds + 1 = {self.limit_s:.1f} s)",
            )
            await self._wait_off(STUCK_WAIT_S)

    async def _wait_off(self, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.relay.on_since() is None:
                return
            await asyncio.sleep(0.05)

    async def revoked_card_never_opens(self, label: str) -> None:
        """Invariant 3 for one presentation of the revoked card (door locked before): the
        relay must not go on until a second after its decision."""
        clear = await self._quiet(label)
        t0 = await self._present("present-card", self.revoked.present_args(self.reader))
        self.expected[("access.denied", "card")] += 1
        decided = await self._await_decisions(label, "the revoked card")
        end = (decided or time.monotonic()) + 1.0
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        opened = self.relay.first_on_after(t0)
        if opened is not None and opened[0] <= end:
            if clear:
                self.violation(label, f"the revoked card opened door {self.door}")
            else:  # an earlier presentation's late decision may have opened it
                self.notes.append(
                    f"[{label}] the door opened after the revoked card while an earlier "
                    "decision was outstanding: left to the events' pseudonyms"
                )
            await self._wait_off(self.limit_s + 5.0)

    async def _quiet(self, label: str) -> bool:
        """Before a presentation: earlier decisions made (their relay actions seen), door
        relocked. False when an earlier decision is still outstanding."""
        clear = True
        if self._pending() > 0:
            clear = await self._await_decisions(label, "an earlier presentation") is not None
            await asyncio.sleep(SETTLE_S)
        await self.door_locked(label)
        return clear

    async def valid_card_opens(self, label: str) -> None:
        """Invariants 2 and 1 for one presentation of the valid card: the relay goes on
        within 1 s and off again within ``unlock_seconds + 1 s``."""
        if await self.open_with_valid_card(label):
            await self.door_locked(label)

    async def open_with_valid_card(self, label: str) -> bool:
        """Invariant 2: present the valid card, the relay must go on within 1 s; returns
        with the door unlocked (True) so that a fault can be injected mid-unlock."""
        await self._quiet(label)
        t0 = await self._present("present-card", self.valid.present_args(self.reader))
        self.expected[("access.granted", "card")] += 1
        interval = None
        deadline = t0 + self.decision_timeout_s
        while time.monotonic() < deadline:
            interval = self.relay.first_on_after(t0)
            if interval is not None:
                break
            await asyncio.sleep(0.02)
        if interval is None:
            self.violation(
                label, f"a valid card did not open door {self.door} in {self.decision_timeout_s} s"
            )
            await self._await_decisions(label, "the valid card")
            return False
        took = interval[0] - t0
        if took > OPEN_WITHIN_S:
            self.violation(label, f"a valid card opened door {self.door} only after {took:.2f} s")
        return True

    async def wrong_pin(self, label: str, pin: str = WRONG_PIN) -> None:
        """One wrong PIN (a failure-count write: the write whose failure put the credential
        cache in charge, issue 18 #3); it must be refused and its decision delivered."""
        clear = await self._quiet(label)
        t0 = await self._present("type-pin", {"reader": self.reader, "pin": pin})
        self.expected[("access.denied", "pin")] += 1
        decided = await self._await_decisions(label, "a wrong PIN")
        end = (decided or time.monotonic()) + 0.5
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        opened = self.relay.first_on_after(t0)
        if opened is not None and opened[0] <= end and clear:
            self.violation(label, f"a wrong PIN opened door {self.door}")
            await self._wait_off(self.limit_s + 5.0)

    async def round(self, label: str, *, wrong_pin: bool = False, revoked: bool = True) -> None:
        """The door is locked; (a wrong PIN;) the revoked card never opens; a valid card
        opens within 1 s and the door relocks within ``unlock_seconds + 1 s``.

        ``revoked=False`` for a baseline before the fault: presenting the revoked card
        while the store works would also correct a stale credential cache, hiding the
        defect the fault is meant to expose."""
        await self.door_locked(label)
        if wrong_pin:
            await self.wrong_pin(label)
        if revoked and self.revoked_person is not None:
            await self.revoked_card_never_opens(label)
        await self.valid_card_opens(label)

    async def no_event_lost(self, within_s: float, label: str = "events") -> None:
        """Invariant 4: wait up to ``within_s`` until, per method, at least as many distinct
        access events arrived as decisions were caused (whether each was right is for
        invariants 2 and 3: a refused valid card is not a lost event)."""
        deadline = time.monotonic() + within_s
        wanted: Counter[str] = Counter()
        for (_type, method), n in self.expected.items():
            wanted[method] += n
        missing: Counter[str] = Counter()
        while True:
            missing = wanted - self.events.decisions(self.door)
            if not missing or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
        if missing:
            got = dict(self.events.distinct(self.door))
            self.violation(
                label,
                f"events lost (not delivered in {within_s:.0f} s): {dict(missing)} decision(s) "
                f"missing; decisions caused {dict(self.expected)}, distinct events {got}",
            )

    def revoked_grants(self) -> int:
        """``access.granted`` events whose pseudonym is the revoked person's."""
        from gateway.mqtt.pseudonym import pseudonym

        if self.revoked_person is None:
            return 0
        n = 0
        for event in list(self.events.by_id.values()):
            if event.get("type") != "access.granted" or not event.get("person"):
                continue
            epoch = _event_epoch(event, self.epoch_s)
            names = {
                pseudonym(self.revoked_person, self.pseudonym_key, e)
                for e in (epoch - 1, epoch, epoch + 1)
            }
            n += event["person"] in names
        return n

    def assert_held(self) -> None:
        """Final checks over the whole test, then raise with every violation."""
        now = time.monotonic()
        for on, off in self.relay.snapshot():
            held = (off if off is not None else now) - on
            if held > self.limit_s + 0.1:  # + a sampling period
                what = f"door {self.door}: relay on for {held:.1f} s (limit {self.limit_s:.1f} s)"
                if on in self._stuck:
                    self.notes.append(f"[relay watch] {what}")
                else:
                    self.violation("relay watch", what)
        grants = self.revoked_grants()
        if grants:
            self.violation("events", f"{grants} access.granted event(s) for the revoked person")
        if self.violations:
            tail = self.stack.daemon_log_tail(60)
            raise AssertionError(
                "fault invariants violated:\n  "
                + "\n  ".join(self.violations)
                + ("\nnotes:\n  " + "\n  ".join(self.notes) if self.notes else "")
                + f"\n\ndaemon log (tail):\n{tail}"
            )
