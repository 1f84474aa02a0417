"""The roster on the broker: the office's publisher and the gate's follower (aiomqtt).

Each keeps its own MQTT 5 connection (client id ``roster-{site}-{gate}``), reconnects with
capped jittered backoff and does its work through the services
(:mod:`gateway.services.roster_office`, ``roster_publish``, ``roster_gate``) on a database
thread. The gate's face path stays closed (:meth:`GateRosterAgent.face_guard`) until a
verified manifest has been applied since the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.aio import run_together
from gateway.mqtt.cancel_safe import Client
from gateway.mqtt.client import MqttSettings
from gateway.mqtt.payload import payload_bytes
from gateway.mqtt.roster_topics import RosterTopics
from gateway.privacy.roster_crypto import RosterError, canonical
from gateway.services import roster_gate, roster_office, roster_publish

log = logging.getLogger(__name__)
T = TypeVar("T")
RunDb = Callable[..., Awaitable[Any]]
#: After adopting a site key: time for the acknowledgement to go out before the restart.
RESTART_AFTER_KEYS_S = 1.0
FETCH_BATCH = 16  # topics asked for at once (under the brokers' default in-flight windows)


def _client(settings: MqttSettings, identifier: str) -> aiomqtt.Client:
    client = Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        identifier=identifier,
        protocol=(  # MQTT 5 unless configured 3.1.1 (e.g. the demo's embedded broker)
            aiomqtt.ProtocolVersion.V311
            if settings.protocol == "3.1.1"
            else aiomqtt.ProtocolVersion.V5
        ),
        keepalive=settings.keepalive_s,
        timeout=settings.connect_timeout_s,
        tls_context=settings.tls_context(),
        max_inflight_messages=64,
    )
    # the office publishes every gate's messages of a pass at once: not a backlog warning
    client.pending_calls_threshold = 100_000
    return client


@contextlib.asynccontextmanager
async def _connected(settings: MqttSettings, identifier: str) -> AsyncIterator[aiomqtt.Client]:
    """A connected client; its disconnect is bounded (2 s), as the gate's MQTT session's
    is, so that a cancelled agent always stops."""
    client = _client(settings, identifier)
    await client.__aenter__()
    try:
        yield client
    finally:
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError, OSError):
            async with asyncio.timeout(2.0):
                await client.__aexit__(None, None, None)


async def _reconnecting(what: str, session: Callable[[], Awaitable[None]]) -> None:
    delay = 0.2
    while True:
        try:
            await session()
            delay = 0.2
        except aiomqtt.MqttError as exc:
            log.warning("roster %s: broker unavailable (%s), retry in %.1f s", what, exc, delay)
        except Exception:  # the daemon keeps running: log it, start a new session
            log.exception("roster %s: session failed; a new one starts", what)
        await asyncio.sleep(random.uniform(delay / 2, delay))
        delay = min(3.0, delay * 2)


@dataclass(frozen=True)
class OfficeSettings:
    """The office's publishing parameters (from ``[roster]``)."""

    chunk_bytes: int = 256 * 1024
    max_pending: int = 5000
    erasure_ack_s: float = 300.0
    poll_s: float = 0.25
    full_pass_s: float = 30.0
    #: an acknowledged gate's chunks are cleared (a new manifest) at most this often, so a
    #: burst of acks does not make a second round of messages to every gate at once
    tidy_s: float = 2.0


class OfficeRosterAgent:
    """Turns the office's changes into versions and keeps every gate's topics current."""

    def __init__(
        self,
        deps: roster_office.OfficeDeps,
        key: Ed25519PrivateKey,
        mqtt: MqttSettings,
        topics: RosterTopics,
        run_db: RunDb,
        *,
        settings: OfficeSettings | None = None,
    ) -> None:
        self.deps, self.key, self.mqtt, self.topics, self.run_db = deps, key, mqtt, topics, run_db
        self.settings = settings or OfficeSettings()
        self._due: set[str] = set()
        self._force: set[str] = set()  # gates whose manifest is republished as is
        self._refused: dict[str, bytes] = {}  # gate -> digest of its last refused ack
        self._tidy: set[str] = set()  # acknowledged gates whose chunks can be cleared
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Serve until cancelled."""
        await _reconnecting("office", self._session)

    async def _session(self) -> None:
        ident = f"roster-{self.topics.site}-office"
        async with _connected(self.mqtt, ident) as client:
            await client.subscribe(self.topics.acks_wildcard, qos=1)
            self._due = set(await self.run_db(roster_office.gate_keys, self.deps.db))
            await run_together(self._acks(client), self._publish_loop(client), name="roster-office")

    async def _acks(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            parts = self.topics.split(str(message.topic))
            if parts is None or parts[1] != "ack":
                continue
            payload = payload_bytes(message.payload)
            if not payload:
                continue
            try:
                recorded = await self.run_db(
                    roster_office.record_ack,
                    self.deps.db,
                    self.deps.site,
                    parts[0],
                    payload,
                    time.time(),
                )
            except roster_office.AckRefusedError as exc:
                await self._refused_ack(client, parts[0], payload, exc)
                continue
            if recorded and b'"error"' in payload:  # maybe a forged manifest replaced ours
                self._due.add(parts[0])
                self._force.add(parts[0])
                self._wake.set()
            elif recorded and await self.run_db(
                roster_office.behind, self.deps.db, self.deps.site, parts[0]
            ):  # a gate back from an outage: what it needs is planned now
                self._due.add(parts[0])
                self._wake.set()
            elif recorded:  # up to date: its acknowledged chunks are cleared at a tidy pass
                self._tidy.add(parts[0])

    async def _refused_ack(
        self, client: aiomqtt.Client, gate: str, payload: bytes, exc: Exception
    ) -> None:
        """An unauthenticated or forged ack (audited by the service): logged and an alert
        event, once per distinct payload; the gate's last genuine ack is kept."""
        digest = hashlib.sha256(payload).digest()
        if self._refused.get(gate) == digest:
            return
        if len(self._refused) > 4096:  # bounded: acks on made-up gate topics
            self._refused.clear()
        self._refused[gate] = digest
        log.warning("roster: acknowledgement of gate %s refused: %s", gate[:64], exc)
        alert = {"type": "roster.ack_refused", "gate": gate[:64], "error": str(exc)[:300]}
        await client.publish(self.topics.alerts, canonical(alert), qos=1)

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        last_full = last_tidy = time.monotonic()
        while True:
            await self.step(client)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll_s):
                    await self._wake.wait()
            self._wake.clear()
            if self._tidy and time.monotonic() - last_tidy >= self.settings.tidy_s:
                self._due |= self._tidy
                self._tidy.clear()
                last_tidy = time.monotonic()
            if time.monotonic() - last_full > self.settings.full_pass_s:
                gates = set(await self.run_db(roster_office.gate_keys, self.deps.db))
                self._due |= gates
                self._force |= gates  # a retained manifest overwritten by anyone is restored
                last_full = time.monotonic()

    async def step(self, client: aiomqtt.Client) -> int:
        """One pass: reconcile, publish what each due gate needs, raise due alerts."""
        made = await self.run_db(roster_office.reconcile, self.deps)
        if made:
            self._due |= set(await self.run_db(roster_office.gate_keys, self.deps.db))
        s = self.settings
        gates, force = sorted(self._due), set(self._force)
        self._due.clear()  # an ack arriving while this pass publishes makes its gate due again
        self._force.clear()
        if gates:  # every gate planned in one database call, published without a wait each
            pubs = await self.run_db(
                roster_publish.plan_many,
                self.deps,
                gates,
                self.key,
                chunk_bytes=s.chunk_bytes,
                max_pending=s.max_pending,
                force=force,
            )
            await asyncio.gather(  # paho sends them in this order; one PUBACK wait for all
                *(
                    client.publish(self.topics.gate(p.gate, suffix), payload, qos=1, retain=True)
                    for p in pubs
                    for suffix, payload in p.messages
                )
            )
            await self.run_db(roster_publish.published_many, self.deps, pubs)
        for gate, suffixes in (
            await self.run_db(roster_office.pending_clears, self.deps.db)
        ).items():
            await asyncio.gather(  # a removed gate's retained messages: gone from the broker
                *(
                    client.publish(self.topics.gate(gate, suffix), b"", qos=1, retain=True)
                    for suffix in suffixes
                )
            )
            await self.run_db(roster_office.cleared, self.deps.db, gate)
            log.info("roster: the retained messages of removed gate %s cleared", gate)
        for alert in await self.run_db(roster_publish.due_alerts, self.deps, s.erasure_ack_s):
            log.warning("roster: erasure not acknowledged by gate %s in time", alert["gate"])
            await client.publish(self.topics.alerts, canonical(alert), qos=1)
        return int(made)


class GateRosterAgent:
    """Follows the office's roster for one gate and acknowledges what it applied."""

    def __init__(
        self,
        deps: roster_gate.GateDeps,
        mqtt: MqttSettings,
        topics: RosterTopics,
        run_db: RunDb,
        *,
        fetch_wait_s: float = 5.0,
        restart: Callable[[str], None] | None = None,
    ) -> None:
        self.deps, self.mqtt, self.topics, self.run_db = deps, mqtt, topics, run_db
        self.fetch_wait_s = fetch_wait_s
        self.restart = restart  # the daemon's restart in place (after adopting a site key)
        self.synced = asyncio.Event()  # a verified manifest applied since the start
        self._docs: dict[str, bytes] = {}
        self._changed = asyncio.Event()
        self._refused: str | None = None  # the stream last refused (not audited twice)
        self.applied = 0  # batches applied since start
        self._missing: list[str] = []  # topic suffixes the manifest names that did not arrive
        self._missing_key = ""  # the state they were missing in
        self._fetched: str | None = None  # the state last fetched for
        self.rejections = 0

    async def run(self) -> None:
        """Follow until cancelled (first adopting site keys a roster sent before a crash or
        a failed adoption: :func:`roster_gate.adopt_pending`)."""
        try:
            if await self.run_db(roster_gate.adopt_pending, self.deps):
                self._restart_with_new_keys()
        except Exception:  # the roster goes on (a revocation is never held up); retried
            log.exception("roster: adopting the site key sent before failed; retried later")
        await _reconnecting(f"gate {self.deps.gate}", self._session)

    async def _session(self) -> None:
        ident = f"roster-{self.topics.site}-{self.deps.gate}"
        async with _connected(self.mqtt, ident) as client:
            self._docs.clear()
            self._fetched = None
            await client.subscribe(self.topics.gate_wildcard(self.deps.gate), qos=1)
            await run_together(
                self._collect(client), self._follow(client), name=f"roster-{self.deps.gate}"
            )

    async def _collect(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            parts = self.topics.split(str(message.topic))
            if parts is None or parts[0] != self.deps.gate or parts[1] == "ack":
                continue
            payload = payload_bytes(message.payload)
            if payload:
                self._docs[parts[1]] = payload
            else:
                self._docs.pop(parts[1], None)
            self._changed.set()

    async def _follow(self, client: aiomqtt.Client) -> None:
        waiting_since: float | None = None
        last_ack = b""  # published in this session: the same ack is not sent twice
        while True:
            self._changed.clear()
            outcome = await self._attempt(waiting_since)
            if outcome == "wait":
                waiting_since = waiting_since or time.monotonic()
                if self._late(waiting_since) and self._fetched != self._missing_key:
                    self._fetched = self._missing_key  # once per state of what arrived
                    await self._fetch(client, self._missing)
                    waiting_since = time.monotonic()
                    continue
            else:
                waiting_since = None
                if outcome is not None and outcome != last_ack:
                    await client.publish(
                        self.topics.gate(self.deps.gate, "ack"), outcome, qos=1, retain=True
                    )
                    last_ack = outcome
            timeout = self.fetch_wait_s if outcome == "wait" else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            await asyncio.sleep(0.05)  # let a burst of retained messages arrive together

    async def _fetch(self, client: aiomqtt.Client, suffixes: list[str]) -> None:
        """Ask for the retained messages that did not arrive, a few topics at a time: a
        broker drops what exceeds a session's queue when a large retained set is sent at
        once on subscribing (mosquitto ``max_queued_messages``, EMQX ``mqtt.max_mqueue_len``),
        and each new subscription sends its topic's retained message again."""
        log.info("roster: %d retained messages missing: fetching them", len(suffixes))
        for i in range(0, len(suffixes), FETCH_BATCH):
            batch = suffixes[i : i + FETCH_BATCH]
            topics = [self.topics.gate(self.deps.gate, s) for s in batch]
            await client.subscribe([(t, 1) for t in topics])
            deadline = time.monotonic() + self.fetch_wait_s
            while any(s not in self._docs for s in batch) and time.monotonic() < deadline:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline - time.monotonic()):
                        await self._changed.wait()
            await client.unsubscribe(topics)

    def _missing_now(self, missing: list[str], key: str, waiting_since: float | None) -> bool:
        """Note what is missing; True (wait) until it was fetched once and waited for."""
        self._missing, self._missing_key = missing, key
        return bool(missing) and not (self._late(waiting_since) and self._fetched == key)

    async def _attempt(self, waiting_since: float | None) -> Any:
        """Try to apply what the broker holds: an ack payload, "wait" or None."""
        manifest = self._docs.get("manifest")
        if manifest is None:
            return "wait" if self._missing_now(["manifest"], "", waiting_since) else None
        key = hashlib.sha256(manifest + "".join(sorted(self._docs)).encode()).hexdigest()
        try:
            m = roster_gate.check_manifest(self.deps, manifest)
            firsts, snap = await self.run_db(roster_gate.needed, self.deps, m)
            missing = [f"c/{f}" for f in firsts if f"c/{f}" not in self._docs]
            if snap:
                n = int(m["snapshot"]["parts"])
                missing += [f"s/{i}" for i in range(n) if f"s/{i}" not in self._docs]
            if self._missing_now(missing, key, waiting_since):
                return "wait"
            chunks = {f: self._docs[f"c/{f}"] for f in firsts if f"c/{f}" in self._docs}
            parts = None
            if snap:
                n = int(m["snapshot"]["parts"])
                parts = [self._docs[f"s/{i}"] for i in range(n) if f"s/{i}" in self._docs]
            checked = await self.run_db(roster_gate.verify, self.deps, m, chunks, parts)
            if checked.snapshot is not None or checked.changes:
                counts = await self.run_db(roster_gate.apply, self.deps, checked)
                self.applied += 1
                if counts.get("site_key"):
                    self._restart_with_new_keys()
        except sqlite3.Error:
            raise  # the store, not the message: the session restarts and tries again
        except Exception as exc:  # noqa: BLE001 - any message, however malformed: one refusal
            if not isinstance(exc, RosterError):
                exc = RosterError(f"malformed roster message ({type(exc).__name__})")
            if key != self._refused:
                self._refused = key
                self.rejections += 1
                await self.run_db(roster_gate.reject, self.deps, exc)
            return await self.run_db(roster_gate.ack_payload, self.deps, str(exc))
        self._refused = None
        self.synced.set()
        return await self.run_db(roster_gate.ack_payload, self.deps, None)

    def _restart_with_new_keys(self) -> None:
        """The gate adopted the site's new key: restart in place once the ack is out (every
        part then runs with it; other writes are held until then)."""
        why = "site key adopted from the roster"
        if self.restart is None:
            log.warning("roster: %s: restart the gateway to run with it", why)
            return
        asyncio.get_running_loop().call_later(RESTART_AFTER_KEYS_S, self.restart, why)

    def _late(self, since: float | None) -> bool:
        return since is not None and time.monotonic() - since >= self.fetch_wait_s

    async def sync_once(self, timeout_s: float) -> bool:
        """At start: read the retained manifest and apply it (at most ``timeout_s``) before
        the face path opens and the readers run; True when applied. A gate that cannot
        reach the broker starts on its last good version, face closed until synced."""
        session = asyncio.create_task(self._session())
        try:
            done = await self.wait_synced(timeout_s)
        finally:
            session.cancel()
            await asyncio.wait({session})  # raises only when this start is cancelled itself
            if not session.cancelled() and (exc := session.exception()) is not None:
                log.debug("roster: start-up session ended: %s", exc)
        if not done:
            log.warning("roster: not applied within %.1f s of start: face closed", timeout_s)
        return done

    async def wait_synced(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) for the first applied manifest; True when synced."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.synced.wait()
        return self.synced.is_set()

    def face_guard(
        self, sink: Callable[[str, Any], Awaitable[None]]
    ) -> Callable[[str, Any], Awaitable[None]]:
        """``sink`` that drops face outcomes until the roster is applied (fail closed for
        face: a withdrawn face never opens a door before its erasure is applied)."""

        async def guarded(camera: str, outcome: Any) -> None:
            if not self.synced.is_set():
                log.warning("roster: face outcome dropped: roster not applied since start")
                return
            await sink(camera, outcome)

        return guarded
