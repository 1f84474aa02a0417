"""The compound's other gates, as their retained MQTT documents tell it.

Every gate publishes a retained ``{prefix}/{site}/{gate}/enrolled`` with its count of
people with face data (``enrolled_people``, never an identity), refreshed with its status.
The Last Will touches only ``.../status``, so a gate that went down keeps its last count on
the broker. The compliance report (Art. 15: filing at 100,000 people across the compound)
sums them. A person synced to several gates is counted once per gate: the sum is an upper
bound, so the warning comes early, never late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiomqtt

from gateway.errors import GatewayError
from gateway.mqtt.cancel_safe import Client
from gateway.mqtt.payload import PayloadError, loads_bounded, payload_bytes

if TYPE_CHECKING:
    from gateway.config.root import GatewayConfig
    from gateway.mqtt.client import MqttSettings

log = logging.getLogger(__name__)

MAX_DOC_BYTES = 64 * 1024
"""A status or enrolled document is a few KB at most; larger ones are refused unparsed."""


@dataclass(frozen=True)
class GateCount:
    """One gate's last published count."""

    gate: str
    enrolled_people: int
    state: str


def settings_from_config(cfg: GatewayConfig) -> MqttSettings | None:
    """Connection settings from the ``[mqtt]`` section (None when no broker is configured)."""
    from gateway.mqtt.client import MqttSettings

    m = cfg.mqtt
    if m.url is None:
        return None
    return MqttSettings.from_url(
        m.url,
        client_id=m.client_id or "",
        username=m.username,
        password=m.password.read_bytes().decode() if m.password else None,
        ca_file=m.ca_file,
        cert_file=m.cert_file,
        key_file=m.key.path() if m.key else None,
        protocol=m.protocol,
        keepalive_s=m.keepalive_s,
    )


def _gate_of(topic: str) -> str:
    """The gate level of ``{prefix}/{site}/{gate}/{leaf}`` (the topic is the authority)."""
    return topic.rstrip("/").split("/")[-2]


def parse_enrolled(topic: str, payload: bytes) -> int | None:
    """A gate's count from its ``enrolled`` document; None (logged) when unusable."""
    gate = _gate_of(topic)
    try:
        doc: Any = loads_bounded(payload, max_bytes=MAX_DOC_BYTES)
    except PayloadError as exc:
        log.warning("gate %s: %s refused (%s); ignored", gate, topic, exc.reason)
        return None
    count = doc.get("enrolled_people") if isinstance(doc, dict) else None
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        log.warning("gate %s: %s carries no valid enrolled_people (%r)", gate, topic, count)
        return None
    return count


def parse_state(payload: bytes) -> str:
    """``online`` / ``offline`` from a status document (``unknown`` when unreadable)."""
    try:
        doc: Any = loads_bounded(payload, max_bytes=MAX_DOC_BYTES)
    except PayloadError:
        return "unknown"
    return str(doc.get("state", "unknown")) if isinstance(doc, dict) else "unknown"


async def collect_counts(
    settings: MqttSettings, prefix: str, site: str, *, wait_s: float = 2.0
) -> dict[str, GateCount]:
    """Read the retained count and status of every gate of ``site`` (``wait_s`` to arrive)."""
    counts: dict[str, int] = {}
    states: dict[str, str] = {}
    try:
        async with Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password,
            identifier=f"access-compliance-{secrets.token_hex(4)}",
            tls_context=settings.tls_context(),
            timeout=settings.connect_timeout_s,
        ) as client:
            await client.subscribe(f"{prefix}/{site}/+/enrolled", qos=1)
            await client.subscribe(f"{prefix}/{site}/+/status", qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    async for msg in client.messages:
                        topic = str(msg.topic)
                        payload = payload_bytes(msg.payload)
                        if topic.endswith("/status"):
                            states[_gate_of(topic)] = parse_state(payload)
                        elif (count := parse_enrolled(topic, payload)) is not None:
                            counts[_gate_of(topic)] = count
    except aiomqtt.MqttError as exc:
        raise GatewayError(
            f"cannot read gate counts from MQTT {settings.host}:{settings.port}: {exc}"
        ) from exc
    return {g: GateCount(g, c, states.get(g, "unknown")) for g, c in counts.items()}
