"""Units of the roster: sealing per gate, the chain, the manifest signature, the face
guard and the fail-closed start, the configuration rule, the erasure classification."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.config.roster import RosterConfig
from gateway.gate.roster_agent import GateRosterAgent
from gateway.mqtt.client import MqttSettings
from gateway.mqtt.roster_topics import RosterTopics
from gateway.mqtt.sign import generate, key_id_of, public_b64
from gateway.privacy.roster_crypto import (
    RosterError,
    gate_private,
    genesis,
    link,
    open_sealed,
    roster_id,
    seal,
    sign_manifest,
    verify_manifest,
)
from gateway.services.roster_entries import is_erasure
from tests.roster.support import make_gate, make_office
from tests.support.net import free_port


def test_a_message_sealed_for_one_gate_opens_there_only() -> None:
    a, b = gate_private(os.urandom(32)), gate_private(os.urandom(32))
    blob = seal(a.public_key(), "north", b"entry", b"aad")
    assert open_sealed(a, "north", blob, b"aad") == b"entry"
    for key, gate, aad in ((b, "north", b"aad"), (a, "south", b"aad"), (a, "north", b"other")):
        with pytest.raises(RosterError, match="another gate"):
            open_sealed(key, gate, blob, aad)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(RosterError):
        open_sealed(a, "north", tampered, b"aad")


def test_the_gate_key_follows_the_device_key() -> None:
    device = os.urandom(32)
    assert gate_private(device).private_bytes_raw() == gate_private(device).private_bytes_raw()
    assert (
        gate_private(device).private_bytes_raw() != gate_private(os.urandom(32)).private_bytes_raw()
    )


def test_the_chain_depends_on_every_change_and_its_order() -> None:
    g = genesis("s", "north")
    one, two = {"v": 1, "rid": "a"}, {"v": 2, "rid": "b"}
    assert link(link(g, one), two) != link(link(g, two), one)
    assert link(g, one) != link(genesis("s", "south"), one)


def test_roster_ids_are_per_gate_and_opaque() -> None:
    root = os.urandom(32)
    a, b = roster_id(root, "north", "p1"), roster_id(root, "south", "p1")
    assert a != b
    assert "p1" not in a
    assert a == roster_id(root, "north", "p1")


def test_manifest_signature() -> None:
    key = generate()
    trusted = {key_id_of(key.public_key()): public_b64(key.public_key())}
    doc = sign_manifest({"version": 3, "head": "ab"}, key)
    assert verify_manifest(doc, trusted)["version"] == 3
    with pytest.raises(RosterError, match="does not verify"):
        verify_manifest({**doc, "version": 4}, trusted)
    with pytest.raises(RosterError, match="unknown key"):
        verify_manifest(sign_manifest({"version": 3}, generate()), trusted)
    with pytest.raises(RosterError):
        verify_manifest([1, 2], trusted)


def _entry(**over: Any) -> dict[str, Any]:
    base = {"role": "resident", "group": "residents", "from": None, "until": None}
    base.update(cards=["aa"], pins=[{"hash": "h"}], consent={"status": "granted"}, face="d1")
    base.update(over)
    return base


@pytest.mark.parametrize(
    ("new", "erasure"),
    [
        (None, True),
        (_entry(face=None), True),
        (_entry(cards=[]), True),
        (_entry(pins=[]), True),
        (_entry(consent={"status": "withdrawn"}), True),
        (_entry(until=100.0), True),
        (_entry(group="staff"), True),
        (_entry(cards=["aa", "bb"]), False),
        (_entry(face="d2"), True),
        (_entry(), False),
    ],
)
def test_what_counts_as_an_erasure(new: dict[str, Any] | None, erasure: bool) -> None:
    assert is_erasure(_entry(), new) is erasure
    assert is_erasure(None, new) is False


def test_an_office_must_sign() -> None:
    with pytest.raises(ValidationError, match="signing key"):
        RosterConfig(role="office")
    assert RosterConfig(role="office", signing_key=Path("/k.pem")).role == "office"


def test_face_stays_closed_until_the_roster_is_applied(tmp_path: Path) -> None:
    """No broker at all: the start-up sync gives up after its timeout, the gate starts on
    its last good version, and every face outcome is dropped (card and PIN unaffected)."""
    office = make_office(tmp_path)
    gate = make_gate(tmp_path, "north", office)
    settings = MqttSettings(port=free_port(), connect_timeout_s=0.5)
    agent = GateRosterAgent(gate.deps, settings, RosterTopics("access", "green-court"), _run)
    seen: list[str] = []

    async def sink(camera: str, outcome: Any) -> None:
        seen.append(camera)

    async def main() -> None:
        assert await agent.sync_once(0.5) is False
        guarded = agent.face_guard(sink)
        await guarded("north-cam", object())
        assert seen == []
        agent.synced.set()  # as a verified manifest does
        await guarded("north-cam", object())
        assert seen == ["north-cam"]

    asyncio.run(main())


async def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)
