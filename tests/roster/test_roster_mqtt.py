"""The roster agents on a real Mosquitto (in one process): convergence, a forged retained
manifest refused by the gate (audited, acknowledged with the error, the office restores
its own), and a gate that catches up through a snapshot."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.gate.roster_agent import GateRosterAgent, OfficeRosterAgent, OfficeSettings
from gateway.mqtt.client import MqttSettings
from gateway.mqtt.payload import payload_bytes
from gateway.mqtt.roster_topics import RosterTopics
from gateway.mqtt.sign import generate
from gateway.privacy.roster_crypto import sign_manifest
from gateway.services import roster_gate, roster_office, roster_publish
from tests.mosquitto import Mosquitto
from tests.roster.support import SITE, Card, Gate, Office, make_gate, make_office

pytestmark = [pytest.mark.mosquitto]
TOPICS = RosterTopics("access", SITE)


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as m:
        yield m


async def _inline(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


async def _until(what: str, check: Callable[[], bool], timeout_s: float = 40.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        await asyncio.sleep(0.05)


def _converged(office: Office) -> bool:
    st = roster_publish.status(office.db, SITE)
    return all(g.behind == 0 and g.acked > 0 for g in st.gates)


async def _running(coros: list[Awaitable[None]], body: Callable[[], Awaitable[None]]) -> None:
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await body()
    finally:
        # a cancel that lands while aiomqtt's own timeout expires can be absorbed by it
        # (asyncio.timeout uncancels): cancel again until every agent has stopped
        pending = set(tasks)
        for _ in range(30):
            for t in pending:
                t.cancel()
            _done, pending = await asyncio.wait(pending, timeout=1.0)
            if not pending:
                break
        for t in pending:
            t.print_stack()
        assert not pending, "an agent did not stop when cancelled"


def _agents(
    broker: Mosquitto,
    office: Office,
    gates: list[Gate],
    max_pending: int = 5000,
    chunk_bytes: int = 16 * 1024,
) -> tuple[OfficeRosterAgent, list[GateRosterAgent]]:
    settings = MqttSettings(port=broker.port)
    oa = OfficeRosterAgent(
        office.deps,
        office.signing,
        settings,
        TOPICS,
        _inline,
        settings=OfficeSettings(chunk_bytes=chunk_bytes, max_pending=max_pending, poll_s=0.05),
    )
    gas = [GateRosterAgent(g.deps, settings, TOPICS, _inline, fetch_wait_s=1.0) for g in gates]
    return oa, gas


def _one_gate(
    broker: Mosquitto, tmp_path: Path
) -> tuple[Office, Gate, OfficeRosterAgent, GateRosterAgent]:
    """An office with one person (a card) and its gate ``north``, and their agents."""
    office = make_office(tmp_path)
    north = make_gate(tmp_path, "north", office)
    office.add("A", card=11)
    oa, (ga,) = _agents(broker, office, [north])
    return office, north, oa, ga


def test_forged_manifest_on_the_broker_is_refused_and_the_office_restores_its_own(
    broker: Mosquitto, tmp_path: Path
) -> None:
    office, north, oa, ga = _one_gate(broker, tmp_path)

    async def body() -> None:
        await _until("converged", lambda: _converged(office))
        quiet = "SELECT count(*) FROM roster_changes WHERE retained = 1"
        await _until("acked chunks cleared", lambda: not office.db.execute(quiet).fetchone()[0])
        await asyncio.sleep(0.5)  # the office's last manifest (after the clear) delivered
        version = roster_gate.state(north.db, SITE, "north")
        async with aiomqtt.Client("127.0.0.1", broker.port) as attacker:
            real = json.loads(
                roster_publish.plan(
                    office.deps,
                    "north",
                    office.signing,
                    chunk_bytes=4096,
                    max_pending=9,
                    force=True,
                ).messages[-1][1]
            )
            forged = sign_manifest({**real, "version": real["version"] + 5}, generate())
            await attacker.publish(
                TOPICS.gate("north", "manifest"), json.dumps(forged).encode(), qos=1, retain=True
            )
        await _until("refused", lambda: ga.rejections == 1)
        assert roster_gate.state(north.db, SITE, "north") == version
        rows = north.db.execute("SELECT details FROM audit WHERE action = 'roster.rejected'")
        assert "unknown key" in rows.fetchone()[0]
        # the office saw the error in the ack and republished its own manifest
        await _until(
            "restored", lambda: roster_publish.status(office.db, SITE).gates[0].error is None
        )
        office.add("B", card=12)
        await _until(
            "B applied", lambda: roster_publish.status(office.db, SITE).gates[0].acked >= 2
        )
        assert north.creds.identify_card(Card(10, 12)) is not None

    asyncio.run(_running([oa.run(), ga.run()], body))


def test_gate_offline_for_many_changes_catches_up_from_a_snapshot(
    broker: Mosquitto, tmp_path: Path
) -> None:
    office = make_office(tmp_path)
    north, south = make_gate(tmp_path, "north", office), make_gate(tmp_path, "south", office)

    def agents(*gates: Gate) -> list[Awaitable[None]]:
        oa, gas = _agents(broker, office, list(gates), max_pending=10)
        return [oa.run(), *(g.run() for g in gas)]

    async def online() -> None:
        await _until("converged", lambda: _converged(office))

    def north_current() -> bool:
        gates = {g.gate: g for g in roster_publish.status(office.db, SITE).gates}
        return gates["north"].behind == 0 and gates["south"].behind >= 20

    async def offline_changes() -> None:
        await _until("north current", north_current)

    office.add("first", card=1)
    asyncio.run(_running(agents(north, south), online))
    for i in range(20):
        office.add(f"P{i}", card=100 + i)
    asyncio.run(_running(agents(north), offline_changes))
    asyncio.run(_running(agents(north, south), online))

    assert south.db.execute("SELECT count(*) FROM people").fetchone()[0] == 21
    applied = south.db.execute(
        "SELECT details FROM audit WHERE action = 'roster.applied' ORDER BY seq DESC"
    ).fetchone()[0]
    applied_doc = json.loads(applied)
    assert (applied_doc["from"], applied_doc["to"]) == (1, 21)
    assert applied_doc["put"] == 21  # the whole roster (a snapshot), not the 20 changes


def test_a_forged_ack_on_the_broker_is_refused_and_alerted(
    broker: Mosquitto, tmp_path: Path
) -> None:
    office, north, oa, ga = _one_gate(broker, tmp_path)

    async def body() -> None:
        await _until("converged", lambda: _converged(office))
        office.add("B", card=12)
        await _until(
            "B published", lambda: roster_publish.status(office.db, SITE).gates[0].version >= 2
        )
        await asyncio.sleep(0)
        async with aiomqtt.Client("127.0.0.1", broker.port) as attacker:
            await attacker.subscribe(TOPICS.alerts, qos=1)
            version, hd = roster_office.head(office.db, SITE, "north")
            fake = {"format": "ag-roster-v1", "site": SITE, "gate": "north", "version": version}
            fake |= {"head": hd, "applied_at": time.time() + 60}
            forged = json.dumps(sign_manifest(fake, generate())).encode()
            await attacker.publish(TOPICS.gate("north", "ack"), forged, qos=1, retain=True)
            async with asyncio.timeout(20):
                async for m in attacker.messages:
                    alert = json.loads(payload_bytes(m.payload))
                    if alert.get("type") == "roster.ack_refused":
                        break
        assert alert["gate"] == "north"
        assert "unknown key" in alert["error"]
        refused = office.db.execute(
            "SELECT count(*) FROM audit WHERE action = 'roster.ack_refused'"
        ).fetchone()[0]
        assert refused >= 1
        await _until("B applied", lambda: _converged(office))  # the genuine ack, later
        assert north.creds.identify_card(Card(10, 12)) is not None

    asyncio.run(_running([oa.run(), ga.run()], body))


def test_a_gate_fetches_the_retained_parts_a_small_broker_queue_dropped(tmp_path: Path) -> None:
    """A new gate's snapshot is larger than the broker sends at once on subscribing (a
    session queue of 10 + 4 in flight): the parts dropped are fetched by topic."""
    office = make_office(tmp_path)
    for i in range(40):
        office.add(f"P{i}", card=300 + i)
    north = make_gate(tmp_path, "north", office)
    broker = Mosquitto()
    conf = broker.conf.read_text().replace("max_queued_messages 100000", "max_queued_messages 10")
    broker.conf.write_text(conf.replace("max_inflight_messages 0", "max_inflight_messages 4"))
    oa, (ga,) = _agents(broker, office, [north], max_pending=1, chunk_bytes=4096)

    async def body() -> None:
        await _until("published", lambda: roster_publish.status(office.db, SITE).gates[0].version)
        await asyncio.sleep(1.0)  # every part retained before the gate subscribes
        row = office.db.execute("SELECT value FROM kv WHERE key = 'roster.snapshot.north'")
        assert json.loads(row.fetchone()[0])["parts"] > 14  # more than the broker sends at once
        task = asyncio.ensure_future(ga.run())
        try:
            await _until("converged", lambda: _converged(office))
        finally:
            task.cancel()
            await asyncio.wait([task], timeout=10)
        assert ga.rejections == 0

    with broker:
        asyncio.run(_running([oa.run()], body))
    assert north.db.execute("SELECT count(*) FROM people").fetchone()[0] == 40
