"""Outbox publisher run as a separate process (the kill -9 and Last Will tests).

usage: publisher_proc.py DB PORT COUNT INTERVAL_S
Puts COUNT door.opened events (printing ``PUT <id>`` after each durable put) while the
MqttService drains the outbox, then keeps running until killed; COUNT 0 only drains.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gateway.mqtt.client import MqttService, MqttSettings
from gateway.mqtt.events import DoorOpened
from gateway.mqtt.outbox import Outbox
from gateway.mqtt.topics import Topics
from gateway.store import database as store


async def main(db_path: Path, port: int, count: int, interval: float) -> None:
    db = store.connect(db_path)
    topics = Topics("access", "site1", "gate1")
    outbox = Outbox(db, topics, window=16, batch=32)
    service = MqttService(
        MqttSettings(port=port, client_id="gate1-proc", backoff_max_s=1.0, keepalive_s=5),
        topics,
        outbox,
        health=lambda: {"proc": "ok"},
    )
    task = asyncio.create_task(service.run())
    for _ in range(count):
        ev = DoorOpened(site="site1", gate="gate1", door="main")
        service.publish_event(ev)
        sys.stdout.write(f"PUT {ev.id}\n")
        sys.stdout.flush()
        await asyncio.sleep(interval)
    sys.stdout.write("DONE\n")
    sys.stdout.flush()
    await task


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
