"""Helpers shared by the MQTT tests (imported as ``mqtt_support``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiomqtt

from tests.mosquitto import Mosquitto


class Collector:
    """Reconnecting subscriber with a persistent session; collects (topic, payload dict)."""

    def __init__(self, broker: Mosquitto, topic: str, client_id: str = "test-collector") -> None:
        self.broker = broker
        self.topic = topic
        self.client_id = client_id
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    identifier=self.client_id,
                    clean_session=False,
                    protocol=aiomqtt.ProtocolVersion.V311,
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    async for m in client.messages:
                        raw = m.payload if isinstance(m.payload, bytes) else b"{}"
                        try:
                            doc = json.loads(raw)
                        except ValueError:
                            doc = {"_raw": raw.decode(errors="replace")}
                        self.messages.append((str(m.topic), doc, bool(m.retain)))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    async def __aenter__(self) -> Collector:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def ids(self) -> list[str]:
        """Event ids in arrival order."""
        return [d["id"] for _, d, _ in self.messages if "id" in d]

    async def wait_for(self, predicate: Any, within: float = 10.0) -> None:
        """Wait until ``predicate(self)`` is true."""
        deadline = asyncio.get_running_loop().time() + within
        while not predicate(self):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out; got {len(self.messages)} messages")
            await asyncio.sleep(0.02)


def first_occurrences(ids: list[str]) -> list[str]:
    """Ids in order of first arrival (redeliveries removed)."""
    seen: set[str] = set()
    out = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out
