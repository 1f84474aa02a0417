"""Compound-wide people count for the Art. 15 filing threshold, from the gates' retained
status on a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from gateway.mqtt.client import MqttSettings
from gateway.mqtt.fleet import collect_counts, parse_enrolled, parse_state
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.mosquitto


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as m:
        yield m


async def _retain(broker: Mosquitto, docs: dict[str, bytes]) -> None:
    async with aiomqtt.Client(broker.host, broker.port, identifier="fleet-test") as c:
        for topic, payload in docs.items():
            await c.publish(topic, payload, qos=1, retain=True)


def _report(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``gateway --config CONFIG compliance report --from-mqtt EXTRA...``."""
    cmd = [sys.executable, "-m", "gateway", "--config", str(config), "compliance", "report"]
    return subprocess.run(
        [*cmd, "--from-mqtt", *extra], capture_output=True, text=True, timeout=60, check=False
    )


def _status(gate: str, state: str) -> bytes:
    return json.dumps({"state": state, "site": "s1", "gate": gate}).encode()


def _count(gate: str, count: object) -> bytes:
    return json.dumps({"gate": gate, "enrolled_people": count}).encode()


def test_parse_enrolled_accepts_counts_and_rejects_garbage() -> None:
    assert parse_enrolled("a/s1/g2/enrolled", _count("g2", 7)) == 7
    for bad in (b"\xff", b"[1]", _count("g4", -1), _count("g4", True), _count("g4", "12")):
        assert parse_enrolled("a/s1/g4/enrolled", bad) is None
    assert parse_state(_status("g2", "offline")) == "offline"
    assert parse_state(b"garbage") == "unknown"


def test_counts_of_other_gates_reach_the_compliance_report(
    broker: Mosquitto, minimal_config: Path
) -> None:
    docs = {
        "access/test-site/gate-2/enrolled": _count("gate-2", 70_000),
        "access/test-site/gate-2/status": _status("gate-2", "online"),
        "access/test-site/gate-3/enrolled": _count("gate-3", 15_000),
        "access/test-site/gate-3/status": _status("gate-3", "offline"),  # its Last Will
        # the topic names the gate, whatever the document claims
        "access/test-site/gate-5/enrolled": _count("gate-2", 1),
        "access/test-site/gate-4/enrolled": b"not json",
        "access/other-site/gate-9/enrolled": _count("gate-9", 99_999),
    }
    asyncio.run(_retain(broker, docs))
    settings = MqttSettings(host=broker.host, port=broker.port)
    found = asyncio.run(collect_counts(settings, "access", "test-site", wait_s=1.0))
    counts = {g: c.enrolled_people for g, c in found.items()}
    assert counts == {"gate-2": 70_000, "gate-3": 15_000, "gate-5": 1}
    assert found["gate-3"].state == "offline"
    assert found["gate-5"].state == "unknown"

    # The CLI, bound to this gate's config, sums them: 85,001 >= 80,000 -> warning.
    cfg = minimal_config.read_text().replace(
        "[mqtt]\nenabled = false", f'[mqtt]\nurl = "mqtt://127.0.0.1:{broker.port}"'
    )
    minimal_config.write_text(cfg)
    run = _report(minimal_config, "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["gate"] == "gate-1"
    assert report["enrolled_other_gates"] == {"gate-2": 70_000, "gate-3": 15_000, "gate-5": 1}
    assert report["compound"]["total"] == 85_001
    assert report["compound"]["level"] != "ok"
    assert "gate gate-3 is offline" in run.stderr


def test_from_mqtt_without_a_broker_is_a_clear_error(minimal_config: Path) -> None:
    run = _report(minimal_config)
    assert run.returncode == 1
    assert "no broker configured" in run.stderr
