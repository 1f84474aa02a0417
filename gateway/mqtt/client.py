"""MQTT connection of the gateway (aiomqtt): reconnect loop, status, outbox, commands.

One connection per gate: MQTT 5 (falls back to 3.1.1 when the broker refuses 5), optional
TLS with CA / client certificate / key from files, username/password, client id per gate.
While connected it publishes the retained ``status`` (online + version, uptime, health),
drains the :class:`~gateway.mqtt.outbox.Outbox` in order with QoS 1, and executes commands
from ``.../cmd/+``; a retained Last Will marks the gate offline if the connection dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway import __version__
from gateway.aio import run_together
from gateway.errors import ConfigError
from gateway.mqtt.cancel_safe import Client
from gateway.mqtt.commands import CommandProcessor, CommandResult
from gateway.mqtt.events import BaseEvent, uuid7
from gateway.mqtt.homeassistant import HomeAssistant
from gateway.mqtt.outbox import Outbox
from gateway.mqtt.payload import payload_bytes
from gateway.mqtt.rejections import RejectionLimiter
from gateway.mqtt.retained import RetainedStore
from gateway.mqtt.topics import Topics

log = logging.getLogger(__name__)

HealthFn = Callable[[], Mapping[str, Any]]
ExtraPublisher = Callable[["MqttService"], Awaitable[None]]

# Largest packet the broker may send us over MQTT 5 (see _connect_properties)
MIN_PACKET_BYTES = 16 * 1024
PACKET_OVERHEAD_BYTES = 4 * 1024

# CONNACK codes meaning "protocol version not supported" (3.1.1: 1, MQTT 5: 0x84)
_BAD_PROTOCOL = {1, 0x84}


@dataclass(frozen=True)
class MqttSettings:
    """Connection parameters (built by the daemon from its config)."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    publish_timeout_s: float = 15.0
    backoff_initial_s: float = 0.5
    # a returning broker is found within ~backoff_max_s (+ connect time); the jitter
    # (uniform in [delay/2, delay]) spreads the gates of a compound after a broker restart
    backoff_max_s: float = 3.0
    status_interval_s: float = 60.0
    version: str = __version__

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> MqttSettings:
        """``mqtt://host:1883`` or ``mqtts://host:8883`` plus keyword overrides."""
        parts = urlsplit(url)
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
            raise ConfigError(
                [("mqtt.url", url, "expected mqtt://host[:port] or mqtts://host[:port]")]
            )
        tls = parts.scheme == "mqtts"
        port = parts.port or (8883 if tls else 1883)
        return cls(host=parts.hostname, port=port, tls=tls, **kwargs)

    def tls_context(self) -> ssl.SSLContext | None:
        """TLS context from the configured files (None without TLS)."""
        if not self.tls:
            return None
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.cert_file is not None:
                ctx.load_cert_chain(
                    str(self.cert_file), str(self.key_file) if self.key_file else None
                )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                [("mqtt.ca_file/cert_file/key", str(self.cert_file or self.ca_file), str(exc))]
            ) from exc
        return ctx


@dataclass
class _State:
    connected: bool = False
    ready: bool = False
    protocol: str | None = None
    failures: int = 0
    connects: int = 0
    message_failures: int = 0
    last_error: str | None = None
    started: float = field(default_factory=time.monotonic)


class MqttService:
    """Keeps the broker connection, publishes status and events, runs commands."""

    def __init__(
        self,
        settings: MqttSettings,
        topics: Topics,
        outbox: Outbox,
        commands: CommandProcessor | None = None,
        *,
        health: HealthFn | None = None,
        homeassistant: HomeAssistant | None = None,
        on_connected: ExtraPublisher | None = None,
        on_withdrawal: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.on_withdrawal = on_withdrawal
        self.topics = topics
        self.outbox = outbox
        self.commands = commands
        self._health = health or dict
        self._on_connected = on_connected
        self.homeassistant = homeassistant
        self._state = _State()
        self._client: aiomqtt.Client | None = None
        self._force_311 = settings.protocol == "3.1.1"
        self._tls = settings.tls_context()  # bad CA/cert/key paths fail here, at startup
        self._status_wake = asyncio.Event()
        self._failure_log = RejectionLimiter()  # per-message failures: log lines per window
        self.retained = RetainedStore()  # retained documents other parts read (audit head, counts)

    # ------------------------------------------------------------------ public

    def handle_withdrawals(self, handler: Callable[[bytes], Awaitable[None]]) -> None:
        """Give the site's withdrawal fan-out messages to ``handler``: the gate registers it
        once its withdrawal side is built (before the service runs), as command handlers
        are registered with the command processor."""
        self.on_withdrawal = handler

    @property
    def connected(self) -> bool:
        """True while a broker connection is up."""
        return self._state.connected

    @property
    def ready(self) -> bool:
        """True once connected, status published and the command subscription in place."""
        return self._state.ready

    @property
    def connects(self) -> int:
        """Sessions established since start (1 + reconnects)."""
        return self._state.connects

    @property
    def message_failures(self) -> int:
        """Received messages whose handling raised (logged; the session went on)."""
        return self._state.message_failures

    @property
    def protocol(self) -> str | None:
        """Protocol of the current/last connection ("5" or "3.1.1")."""
        return self._state.protocol

    def publish_event(self, event: BaseEvent) -> None:
        """Queue an event: durable in the outbox first, published when connected."""
        self.outbox.put(event)
        if self.homeassistant is not None:
            for topic, payload, retain in self.homeassistant.state_for(event):
                self.outbox.put_raw(str(uuid7()), topic, payload, retain=retain)

    def status_changed(self) -> None:
        """Ask for the retained status to be republished now (e.g. health changed)."""
        self._status_wake.set()

    async def publish_direct(
        self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1
    ) -> bool:
        """Publish outside the outbox (status, HA discovery); False when not connected."""
        client = self._client
        if client is None or not self._state.connected:
            return False
        await client.publish(
            topic, payload, qos=qos, retain=retain, timeout=self.settings.publish_timeout_s
        )
        return True

    def _health_doc(self) -> dict[str, Any]:
        try:
            return dict(self._health())
        except Exception as exc:  # noqa: BLE001 - a broken health callback must not stop MQTT
            log.warning("gate %s: health callback failed: %s", self.topics.gate, exc)
            return {"error": type(exc).__name__}

    def status_payload(self, state: str = "online", health: dict[str, Any] | None = None) -> bytes:
        """The retained status document (``health``: already collected, else collected now)."""
        doc: dict[str, Any] = {"state": state, "site": self.topics.site, "gate": self.topics.gate}
        if state == "online":
            stats = self.outbox.stats()
            if health is None:
                health = self._health_doc()
            doc.update(
                version=self.settings.version,
                uptime_s=round(time.monotonic() - self._state.started, 1),
                ts=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                protocol=self._state.protocol,
                health=health,
                outbox={
                    "pending": stats.pending,
                    "in_memory": stats.in_memory,
                    "journalled": stats.journalled,
                    "dropped_total": stats.dropped_total,
                    "degraded": stats.degraded is not None,
                },
                mqtt={
                    "connects": self._state.connects,
                    "message_failures": self._state.message_failures,
                },
            )
        return json.dumps(doc, separators=(",", ":"), default=str).encode("utf-8")

    async def run(self) -> None:
        """Connect, serve, reconnect with capped jittered backoff; returns only when cancelled.

        Alongside, whatever the broker does, the outbox keeps retrying to persist events it
        could only hold in memory (:meth:`Outbox.persist_loop`).
        """
        persister = asyncio.create_task(self.outbox.persist_loop())
        try:
            await self._reconnect_loop()
        finally:
            persister.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await persister
            if self.commands is not None:
                self.commands.flush_rejections(force=True)

    async def _reconnect_loop(self) -> None:
        delay = self.settings.backoff_initial_s
        while True:
            connects = self._state.connects
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                self._state.last_error = str(exc)
                unexpected = False
            except Exception:
                log.exception("gate %s: MQTT session failed unexpectedly", self.topics.gate)
                unexpected = True
            self._state.connected = False
            self._client = None
            self._state.failures += 1
            if self._state.connects != connects:
                delay = self.settings.backoff_initial_s  # the session was up: start over
            sleep = random.uniform(delay / 2, delay)
            if not unexpected:
                msg = "gate %s: MQTT %s:%d unavailable (%s), retry in %.1f s (attempt %d)"
                lvl = logging.WARNING if self._state.failures == 1 else logging.DEBUG
                log.log(
                    lvl,
                    msg,
                    self.topics.gate,
                    self.settings.host,
                    self.settings.port,
                    self._state.last_error,
                    sleep,
                    self._state.failures,
                )
            await asyncio.sleep(sleep)
            delay = min(self.settings.backoff_max_s, delay * 2)

    # ------------------------------------------------------------------ internals

    def _client_for(self, protocol: aiomqtt.ProtocolVersion) -> aiomqtt.Client:
        s = self.settings
        will = aiomqtt.Will(self.topics.status, self.status_payload("offline"), qos=1, retain=True)
        client = Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password,
            identifier=s.client_id or f"access-{self.topics.site}-{self.topics.gate}",
            protocol=protocol,
            will=will,
            keepalive=s.keepalive_s,
            timeout=s.connect_timeout_s,
            tls_context=self._tls,
            max_inflight_messages=max(20, self.outbox.window),
            clean_session=True if protocol != aiomqtt.ProtocolVersion.V5 else None,
            properties=self._connect_properties()
            if protocol == aiomqtt.ProtocolVersion.V5
            else None,
            # small QoS 1 packets pipelined: without NODELAY, Nagle + delayed ACK add ~40 ms
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # the outbox keeps `window` publications in flight on purpose
        client.pending_calls_threshold = self.outbox.window + 16
        return client

    def _connect_properties(self) -> Properties:
        """MQTT 5 Maximum Packet Size: the broker drops larger messages before sending them.

        Twice the largest command accepted: a sender slightly over the limit still gets a
        ``too_large`` answer; a flood of huge messages never reaches this process.
        """
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        largest = self.commands.max_bytes if self.commands is not None else 0
        props.MaximumPacketSize = 2 * max(largest, MIN_PACKET_BYTES) + PACKET_OVERHEAD_BYTES
        return props

    async def _connect(self) -> aiomqtt.Client:
        if not self._force_311:
            client = self._client_for(aiomqtt.ProtocolVersion.V5)
            try:
                await client.__aenter__()
            except aiomqtt.MqttCodeError as exc:
                rc = exc.rc.value if isinstance(exc.rc, ReasonCode) else exc.rc
                if self.settings.protocol != "auto" or rc not in _BAD_PROTOCOL:
                    raise
                log.warning(
                    "gate %s: broker refused MQTT 5 (%s), falling back to 3.1.1",
                    self.topics.gate,
                    exc,
                )
                self._force_311 = True
            else:
                self._state.protocol = "5"
                return client
        client = self._client_for(aiomqtt.ProtocolVersion.V311)
        await client.__aenter__()
        self._state.protocol = "3.1.1"
        return client

    async def _session(self) -> None:
        client = await self._connect()
        self._client = client
        lost = False
        try:
            self._state.connected = True
            self._state.connects += 1
            if self._state.failures:
                log.info(
                    "gate %s: MQTT reconnected to %s:%d after %d failed attempts (MQTT %s)",
                    self.topics.gate,
                    self.settings.host,
                    self.settings.port,
                    self._state.failures,
                    self._state.protocol,
                )
            else:
                log.info(
                    "gate %s: MQTT connected to %s:%d (MQTT %s)",
                    self.topics.gate,
                    self.settings.host,
                    self.settings.port,
                    self._state.protocol,
                )
            self._state.failures = 0
            await self._publish_status(client)
            if self.commands is not None:
                await client.subscribe(self.topics.commands_wildcard, qos=1)
            if self.on_withdrawal is not None:
                await client.subscribe(self.topics.withdrawals_wildcard, qos=1)
            for topic_filter in self.retained.filters:
                await client.subscribe(topic_filter, qos=1)
            self.retained.subscribed()
            if self.homeassistant is not None:
                for topic, payload, retain in self.homeassistant.discovery():
                    await client.publish(
                        topic,
                        payload,
                        qos=1,
                        retain=retain,
                        timeout=self.settings.publish_timeout_s,
                    )
            if self._on_connected is not None:
                await self._on_connected(self)
            self._state.ready = True
            log.info("gate %s: MQTT session ready (subscriptions made)", self.topics.gate)
            await run_together(
                self._read(client),
                self.outbox.drain(self._publisher(client)),
                self._status_loop(client),
                self._housekeeping(),
                name=f"mqtt-{self.topics.gate}",
            )
        except aiomqtt.MqttError:
            lost = True  # the connection itself failed: nothing to say offline on
            raise
        finally:
            self._state.connected = self._state.ready = False
            self._client = None
            await self._close(client, say_offline=not lost)

    async def _close(self, client: aiomqtt.Client, *, say_offline: bool) -> None:
        """Say offline (a clean disconnect suppresses the will) and disconnect, 2 s each at
        most. A stop that arrives meanwhile still lets the disconnect run, then is raised:
        it is never swallowed (the reconnect loop would otherwise take it for a broker
        error and connect again)."""
        stop: asyncio.CancelledError | None = None
        if say_offline:
            try:
                async with asyncio.timeout(2.0):
                    await client.publish(
                        self.topics.status, self.status_payload("offline"), qos=1, retain=True
                    )
            except asyncio.CancelledError as exc:
                stop = exc
            except (aiomqtt.MqttError, OSError):  # TimeoutError is an OSError
                pass
        try:
            async with asyncio.timeout(2.0):
                await client.__aexit__(None, None, None)
        except asyncio.CancelledError as exc:
            stop = exc
        except (aiomqtt.MqttError, OSError):
            pass
        if stop is not None:
            raise stop

    def _publisher(self, client: aiomqtt.Client) -> Callable[[str, bytes, bool], Awaitable[None]]:
        timeout = self.settings.publish_timeout_s

        async def publish(topic: str, payload: bytes, retain: bool) -> None:
            await client.publish(topic, payload, qos=1, retain=retain, timeout=timeout)

        return publish

    def enrolled_payload(self, health: dict[str, Any] | None = None) -> bytes | None:
        """The retained people count (:attr:`Topics.enrolled`), None when not known."""
        count = (self._health_doc() if health is None else health).get("enrolled_people")
        if isinstance(count, bool) or not isinstance(count, int):
            return None
        doc = {
            "gate": self.topics.gate,
            "enrolled_people": count,
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    async def _publish_status(self, client: aiomqtt.Client) -> None:
        health = self._health_doc()  # once for both documents
        await client.publish(
            self.topics.status,
            self.status_payload("online", health),
            qos=1,
            retain=True,
            timeout=self.settings.publish_timeout_s,
        )
        enrolled = self.enrolled_payload(health)
        if enrolled is not None:
            await client.publish(
                self.topics.enrolled,
                enrolled,
                qos=1,
                retain=True,
                timeout=self.settings.publish_timeout_s,
            )

    async def _status_loop(self, client: aiomqtt.Client) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.status_interval_s):
                    await self._status_wake.wait()
            self._status_wake.clear()
            await self._publish_status(client)

    async def _housekeeping(self, every_s: float = 5.0) -> None:
        """Periodic work while connected: summaries of rejected commands and failed messages."""
        while True:
            await asyncio.sleep(every_s)
            self._flush_failure_log()
            if self.commands is not None:
                self.commands.flush_rejections()

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            try:
                await self._handle(client, topic, payload_bytes(message.payload))
            except aiomqtt.MqttError:
                raise  # the connection itself failed: reconnect
            except Exception as exc:
                self._state.message_failures += 1
                self._flush_failure_log()
                if self._failure_log.admit(type(exc).__name__, time.time()):
                    log.error(
                        "gate %s: MQTT message on %s failed (%s); session continues (%d so far)",
                        self.topics.gate,
                        topic,
                        type(exc).__name__,
                        self._state.message_failures,
                    )
                log.debug("gate %s: message failure on %s", self.topics.gate, topic, exc_info=exc)

    def _flush_failure_log(self) -> None:
        """One line for the failures not logged one by one (a flood must not fill the log)."""
        summary = self._failure_log.flush(time.time())
        if summary is not None:
            log.error(
                "gate %s: %d more MQTT messages failed since %s (%s); session continues",
                self.topics.gate,
                summary.total,
                summary.details()["from"],
                ", ".join(f"{k}={n}" for k, n in sorted(summary.counts.items())),
            )

    async def _handle(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        """One received message: a withdrawal fan-out or a command (answered on cmd_result)."""
        if self.retained.accepts(topic):
            if not self.retained.put(topic, payload):
                log.debug("gate %s: retained document on %s not kept", self.topics.gate, topic)
            return
        if topic.endswith("/withdrawal"):
            if self.on_withdrawal is not None:
                await self.on_withdrawal(payload)
            return
        if self.commands is None:
            return
        name = self.topics.command_name(topic)
        if name is None:  # not one of our command topics (a broker may deliver overlaps)
            log.debug("gate %s: message on %s ignored", self.topics.gate, topic)
            return
        result: CommandResult = await self.commands.process(name, payload)
        await client.publish(
            self.topics.command_result,
            result.to_json(),
            qos=1,
            timeout=self.settings.publish_timeout_s,
        )
