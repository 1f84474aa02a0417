"""The demo's management side on MQTT: signed commands to the gate, the event printer."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any


def host_port(url: str) -> tuple[str, int]:
    """Host and port of an ``mqtt://`` URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 1883


async def send_command(
    mqtt_url: str, key: Any, topics: Any, name: str, args: dict[str, Any], *, site: str, gate: str
) -> dict[str, Any]:
    """Send a command signed with ``key`` as the management system would; its
    ``cmd_result`` body. RuntimeError when the gate does not answer or refuses it."""
    import aiomqtt

    from gateway.mqtt import sign

    env = sign.sign_envelope(name, args, key, site=site, gate=gate, key_id="demo")
    host, port = host_port(mqtt_url)
    async with aiomqtt.Client(host, port, identifier=f"demo-mgmt-{secrets.token_hex(3)}") as c:
        await c.subscribe(topics.command_result, qos=1)
        await c.publish(topics.command(name), json.dumps(env).encode(), qos=1)
        try:
            async with asyncio.timeout(10):
                async for msg in c.messages:
                    body: dict[str, Any] = json.loads(bytes(msg.payload))
                    if body.get("nonce") == env["nonce"]:
                        if not body.get("ok"):
                            raise RuntimeError(f"command {name} refused: {body}")
                        return body
        except TimeoutError:
            pass
    raise RuntimeError(f"command {name}: no cmd_result from the gate within 10 s")


async def print_events(mqtt_url: str, prefix: str) -> None:
    """Print every event as it arrives (anonymized: what a guard house would see)."""
    import aiomqtt

    host, port = host_port(mqtt_url)
    while True:
        try:
            async with aiomqtt.Client(
                host, port, identifier=f"demo-print-{secrets.token_hex(3)}"
            ) as c:
                await c.subscribe(f"{prefix}/#", qos=1)
                async for msg in c.messages:
                    topic = str(msg.topic)
                    if "/events/" not in topic and "/alarm/" not in topic:
                        continue
                    body = bytes(msg.payload)
                    print(
                        f"  event {topic.split('/', 3)[-1]}: {body.decode(errors='replace')}",
                        flush=True,
                    )
        except aiomqtt.MqttError:
            await asyncio.sleep(0.5)
