"""Malformed roster input becomes one audited refusal, never a crashed session: a retained
ack or manifest the broker hands back at every reconnect must not wedge either side."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.gate.roster_agent import GateRosterAgent
from gateway.mqtt.client import MqttSettings
from gateway.mqtt.roster_topics import RosterTopics
from gateway.privacy.roster_crypto import (
    FORMAT,
    b64,
    canonical,
    change_aad,
    gate_ack_private,
    gate_private,
    link,
    seal,
    sign_manifest,
)
from gateway.services import roster_gate, roster_office
from tests.roster.support import SITE, Gate, Office, make_gate, make_office

DEEP = b"[" * 100_000  # json.loads raises RecursionError, not ValueError


@pytest.fixture
def site(tmp_path: Path) -> tuple[Office, Gate]:
    office = make_office(tmp_path)
    gate = make_gate(tmp_path, "north", office)
    broker: dict[str, bytes] = {}
    office.add("Li Wei", card=7)
    office.publish(broker)
    gate.sync(broker, office)
    return office, gate


def _signed_ack(gate: Gate, **fields: Any) -> bytes:
    """A genuine ack of what ``gate`` applied, but for ``fields``."""
    version, head = roster_gate.state(gate.db, SITE, gate.name)
    body = {
        "format": FORMAT,
        "site": SITE,
        "gate": gate.name,
        "version": version,
        "head": head,
        "applied_at": 1.0,
        **fields,
    }
    return canonical(sign_manifest(body, gate_ack_private(gate.deps.device_root)))


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda g: _signed_ack(g, version=10**30), id="version-too-big-for-sqlite"),
        pytest.param(lambda g: _signed_ack(g, version=5), id="version-beyond-the-head"),
        pytest.param(lambda g: _signed_ack(g, version=True), id="version-bool"),
        pytest.param(lambda g: _signed_ack(g, applied_at=10**400), id="applied-at-overflow"),
        pytest.param(lambda g: DEEP, id="deeply-nested"),
    ],
)
def test_a_malformed_ack_is_one_audited_refusal(site, payload: Any) -> None:
    office, gate = site
    assert roster_office.record_ack(office.db, SITE, "north", _signed_ack(gate), 2e10)
    acked = roster_office.acked(office.db, "north")
    with pytest.raises(roster_office.AckRefusedError):
        roster_office.record_ack(office.db, SITE, "north", payload(gate), 2e10)
    assert roster_office.acked(office.db, "north") == acked  # the last genuine one kept
    rows = office.db.execute("SELECT count(*) FROM audit WHERE action = 'roster.ack_refused'")
    assert rows.fetchone()[0] == 1


def _stream_with(
    office: Office, gate: Gate, plain: bytes, *, chained: bool = False
) -> dict[str, bytes]:
    """A manifest the office signed and a chunk whose change 2 decrypts to ``plain``
    (``chained``: the manifest's head is the chain's after it, so it verifies)."""
    version, head = roster_gate.state(gate.db, SITE, gate.name)
    if chained:
        head = link(head, json.loads(plain))
    v = version + 1
    sealed = seal(
        gate_private(gate.deps.device_root).public_key(),
        "north",
        plain,
        change_aad(SITE, "north", v),
    )
    chunk = {"gate": "north", "first": v, "last": v, "changes": [{"v": v, "c": b64(sealed)}]}
    manifest = {"format": FORMAT, "site": SITE, "gate": "north", "version": v, "head": head}
    manifest["chunks"] = [[v, v]]
    return {
        "manifest": canonical(sign_manifest(manifest, office.signing)),
        f"c/{v}": canonical(chunk),
    }


async def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


@pytest.mark.parametrize(
    "docs",
    [
        pytest.param(lambda o, g: _stream_with(o, g, b"[]"), id="change-not-an-object"),
        pytest.param(lambda o, g: _stream_with(o, g, b'{"v": 2}'), id="change-without-op"),
        pytest.param(lambda o, g: {"manifest": DEEP}, id="manifest-deeply-nested"),
    ],
)
def test_a_malformed_roster_message_is_refused_and_acknowledged(site, docs: Any) -> None:
    office, gate = site
    before = roster_gate.state(gate.db, SITE, "north")
    agent = GateRosterAgent(
        gate.deps, MqttSettings(), RosterTopics("access", SITE), _run, fetch_wait_s=0
    )
    agent._docs = docs(office, gate)
    ack = json.loads(asyncio.run(agent._attempt(None)))
    assert ack["error"].startswith(("roster change 2 is malformed", "malformed roster message"))
    assert ack["version"] == before[0]
    assert roster_gate.state(gate.db, SITE, "north") == before  # the last good version
    rows = gate.db.execute("SELECT count(*) FROM audit WHERE action = 'roster.rejected'")
    assert rows.fetchone()[0] == 1
    assert agent.rejections == 1


def test_a_refusal_that_travels_names_no_roster_id(site) -> None:
    """The refusal goes into the retained, unencrypted ack and the office's status."""
    office, gate = site
    rid = "ab" * 16
    change = {"v": 2, "op": "put", "rid": rid, "erasure": False, "entry": None}
    agent = GateRosterAgent(
        gate.deps, MqttSettings(), RosterTopics("access", SITE), _run, fetch_wait_s=0
    )
    agent._docs = _stream_with(office, gate, canonical(change), chained=True)
    ack = asyncio.run(agent._attempt(None))
    assert json.loads(ack)["error"] == "a roster put has no entry"
    assert rid.encode() not in ack
    audited = gate.db.execute("SELECT details FROM audit WHERE action = 'roster.rejected'")
    assert rid not in audited.fetchone()[0]
