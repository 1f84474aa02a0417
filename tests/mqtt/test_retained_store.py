"""Retained documents read through the daemon's own MQTT session (audit head, other gates'
people counts): no second broker connection per check."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiomqtt
import pytest

from gateway.mqtt.retained import MAX_PAYLOAD, RetainedStore, topic_matches
from tests.mosquitto import Mosquitto
from tests.mqtt.test_mqtt_service import make_service, running


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("a/b/+/enrolled", "a/b/g1/enrolled", True),
        ("a/b/+/enrolled", "a/b/g1/status", False),
        ("a/b/+/enrolled", "a/b/g1/x/enrolled", False),
        ("a/b/g1/audit/head", "a/b/g1/audit/head", True),
        ("a/#", "a/b/c", True),
        ("a/b", "a/b/c", False),
    ],
)
def test_topic_matching(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected


def test_store_keeps_only_watched_bounded_documents() -> None:
    store = RetainedStore(["s/+/enrolled"])
    assert store.accepts("s/g1/enrolled")
    assert not store.accepts("s/g1/cmd/unlock")
    assert store.put("s/g1/enrolled", b"1")
    assert not store.put("s/g2/enrolled", b"x" * (MAX_PAYLOAD + 1))
    assert store.matching("s/+/enrolled") == {"s/g1/enrolled": b"1"}
    assert store.put("s/g1/enrolled", b"")  # a cleared retained message
    assert store.get("s/g1/enrolled") is None


def test_read_waits_for_a_session_then_settles() -> None:
    async def main() -> None:
        store = RetainedStore(["t/x"])
        t0 = time.monotonic()
        assert await store.read("t/x", wait_s=0.3) is None  # no session at all: bounded
        assert 0.25 <= time.monotonic() - t0 < 2.0
        store.subscribed()
        reader = asyncio.create_task(store.read("t/x", settle_s=1.0, wait_s=5.0))
        await asyncio.sleep(0.1)
        store.put("t/x", b"head")
        assert await reader == b"head"
        store2 = RetainedStore(["t/y"])
        store2.subscribed()
        t0 = time.monotonic()
        assert await store2.read("t/y", settle_s=0.2) is None  # nothing retained
        assert time.monotonic() - t0 < 1.0

    asyncio.run(main())


@pytest.mark.mosquitto
def test_service_session_collects_retained_documents(broker: Mosquitto, db_path: Path) -> None:
    async def main() -> None:
        async with aiomqtt.Client(broker.host, broker.port, identifier="other-gate") as other:
            await other.publish("access/site1/gate2/enrolled", b'{"enrolled_people": 7}', qos=1,
                                retain=True)  # fmt: skip
        service = make_service(broker, db_path)
        service.retained.watch("access/site1/+/enrolled")
        async with running(service):
            doc = await service.retained.read("access/site1/gate2/enrolled", wait_s=10.0)
        assert doc == b'{"enrolled_people": 7}'
        assert service.connects == 1  # read over the one session, no reconnect

    asyncio.run(main())


def test_store_is_bounded_against_a_flood() -> None:
    """Forged retained documents cannot grow the store without limit."""
    from gateway.mqtt.retained import MAX_TOPIC_LEN, MAX_TOPICS

    store = RetainedStore(["s/+/enrolled"])
    kept = sum(store.put(f"s/g{i}/enrolled", b"x" * MAX_PAYLOAD) for i in range(MAX_TOPICS + 50))
    assert kept == MAX_TOPICS
    assert not store.put("s/" + "g" * MAX_TOPIC_LEN + "/enrolled", b"1")
    assert MAX_TOPICS * MAX_PAYLOAD <= 2 * 1024 * 1024
