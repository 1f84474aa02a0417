"""The compound's other gates, as their retained ``status`` documents tell it.

Every gate publishes a retained ``{prefix}/{site}/{gate}/status`` carrying
``enrolled_people`` (a count, never an identity), also in its Last Will and its clean
offline status, so the last known count of a gate that is down stays on the broker. The
compliance report (Art. 15: filing at 100,000 people across the compound) sums them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiomqtt

from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.mqtt.client import MqttSettings

log = logging.getLogger(__name__)


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


def parse_status(topic: str, payload: bytes) -> GateCount | None:
    """A gate's count from its status document; None (logged) when it carries none."""
    gate = topic.rstrip("/").split("/")[-2]
    try:
        doc: Any = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        log.warning("gate %s: status on %s is not JSON; ignored", gate, topic)
        return None
    if not isinstance(doc, dict):
        log.warning("gate %s: status on %s is not an object; ignored", gate, topic)
        return None
    count = doc.get("enrolled_people")
    if count is None and isinstance(doc.get("health"), dict):
        count = doc["health"].get("enrolled_people")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        log.warning("gate %s: status carries no valid enrolled_people (%r)", gate, count)
        return None
    return GateCount(str(doc.get("gate") or gate), count, str(doc.get("state", "unknown")))


async def collect_counts(
    settings: MqttSettings, prefix: str, site: str, *, wait_s: float = 2.0
) -> dict[str, GateCount]:
    """Read the retained status of every gate of ``site`` (``wait_s`` for them to arrive)."""
    topic = f"{prefix}/{site}/+/status"
    found: dict[str, GateCount] = {}
    try:
        async with aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password,
            identifier=f"access-compliance-{secrets.token_hex(4)}",
            tls_context=settings.tls_context(),
            timeout=settings.connect_timeout_s,
        ) as client:
            await client.subscribe(topic, qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    async for msg in client.messages:
                        got = parse_status(str(msg.topic), bytes(msg.payload))
                        if got is not None:
                            found[got.gate] = got
    except aiomqtt.MqttError as exc:
        raise GatewayError(
            f"cannot read gate status from MQTT {settings.host}:{settings.port}: {exc}"
        ) from exc
    return found
