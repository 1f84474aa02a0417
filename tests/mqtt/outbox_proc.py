"""A gate's outbox + MQTT service as a separate process, driven over stdin (kill -9 tests).

usage: outbox_proc.py DB PORT
Wired like the daemon (own outbox connection with a 200 ms lock wait). Commands on stdin:
``put N`` puts N access events and prints ``PUT <id>`` after each put returned;
``stats`` prints ``STATS {json}`` (connected, pending, in_memory, journalled, degraded).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path

from gateway.mqtt.client import MqttService, MqttSettings
from gateway.mqtt.events import AccessGranted
from gateway.mqtt.outbox import Outbox
from gateway.mqtt.topics import Topics
from gateway.store import database as store


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(db_path: Path, port: int) -> None:
    topics = Topics("access", "site1", "gate1")
    outbox = Outbox(store.connect(db_path, busy_timeout_ms=200), topics)
    service = MqttService(
        MqttSettings(port=port, client_id="gate1-proc", keepalive_s=5), topics, outbox
    )
    task = asyncio.create_task(service.run())
    loop = asyncio.get_running_loop()
    say("READY")
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        cmd = line.split()
        if cmd[:1] == ["put"]:
            for _ in range(int(cmd[1])):
                ev = AccessGranted(site="site1", gate="gate1", door="main", method="card")
                service.publish_event(ev)
                say(f"PUT {ev.id}")
        elif cmd[:1] == ["stats"]:
            doc = dataclasses.asdict(outbox.stats())
            doc["connected"] = service.connected
            say("STATS " + json.dumps(doc))
    await task


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
