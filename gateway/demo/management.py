"""The demo's management side on MQTT: signed commands to the gate, the event printer."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

#: The privacy notice the demo's people consent to.
NOTICE = Path(__file__).resolve().parents[2] / "config" / "notice.example.txt"


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
    from gateway.mqtt import sign
    from gateway.mqtt.cancel_safe import Client

    env = sign.sign_envelope(name, args, key, site=site, gate=gate, key_id="demo")
    host, port = host_port(mqtt_url)
    async with Client(host, port, identifier=f"demo-mgmt-{secrets.token_hex(3)}") as c:
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

    from gateway.mqtt.cancel_safe import Client

    host, port = host_port(mqtt_url)
    while True:
        try:
            async with Client(host, port, identifier=f"demo-print-{secrets.token_hex(3)}") as c:
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


def office_export(
    office_dir: Path, keys: dict[str, Path], pipeline: Any, corpus: Any, *, name: str, unit: str
) -> tuple[str, dict[str, Any]]:
    """Enrol ``name`` at another device of the site (the management office's enrolment
    station in ``office_dir``, its own device key, the same site and gates keys: the site key
    stands in until ``--rotate-keys`` gives the gate one); its id and ``sync_person`` args."""
    from gateway.config.base import SecretRef
    from gateway.face.gallery import Gallery
    from gateway.privacy import consent
    from gateway.privacy.enroll import enroll_arrays
    from gateway.privacy.notice import load_notice
    from gateway.privacy.people import add_person
    from gateway.privacy.sync import export_sync_args
    from gateway.privacy.vault import Vault
    from gateway.store import database as store

    site = site_key(keys)
    gates = SecretRef(file=keys.get("gates", keys["site"])).read_bytes()
    office = store.connect(office_dir / "office.db")
    try:
        vault = Vault.from_root_keys(secrets.token_bytes(32), gates)
        pid = add_person(office, name, unit=unit, actor="office")
        notice = load_notice(NOTICE, "demo-1")
        consent.grant(office, pid, notice, method="kiosk", recorded_by="office", scope="compound")
        images = corpus.enrolment_images(name)
        enroll_arrays(office, vault, pipeline, Gallery(), pid, images, actor="office")
        args = export_sync_args(office, vault, pid, gates, seal_key=site, actor="office")
        return pid, args
    finally:
        office.close()


def site_key(keys: dict[str, Path]) -> bytes:
    """The demo site's key as the gateway reads its file (a rotation rewrites the file)."""
    from gateway.config.base import SecretRef

    return SecretRef(file=keys["site"]).read_bytes()


def first_pin_index_key(keys: dict[str, Path]) -> bytes:
    """The site's PIN-index key from its current site key: the management side takes it
    before the first site-key rotation and keeps it (every rotation carries it over)."""
    from gateway.keys import pin_index_key

    return pin_index_key(site_key(keys))
