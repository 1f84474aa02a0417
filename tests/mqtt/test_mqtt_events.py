"""Event schema, privacy of the schema, UUIDv7, pseudonyms, topics, Home Assistant."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.errors import ProtocolError
from gateway.mqtt import events as ev
from gateway.mqtt.homeassistant import HomeAssistant
from gateway.mqtt.pseudonym import Pseudonymizer, epoch_of, pseudonym, resolve
from gateway.mqtt.topics import Topics

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "docs" / "events.schema.json"
BASE = {"site": "site1", "gate": "gate1"}

# minimal valid extra fields per type
SAMPLES: dict[str, dict[str, Any]] = {
    "storage.degraded": {"mode": "read_only"},
    "access.granted": {"door": "main", "method": "face", "confidence": "high"},
    "access.denied": {"door": "main", "method": "card", "reason": "outside_schedule"},
    "door.opened": {"door": "main"},
    "door.closed": {"door": "main"},
    "door.held_open": {"door": "main", "seconds": 40},
    "door.forced": {"door": "main"},
    "door.tailgating_suspected": {"door": "main", "people_seen": 2, "grants": 1},
    "door.liveness_failed_after_grant": {"door": "main"},
    "door.unlocked": {"door": "main", "cause": "access", "seconds": 5},
    "door.locked": {"door": "main"},
    "reader.online": {"reader": "entry"},
    "reader.offline": {"reader": "entry", "reason": "timeout"},
    "camera.online": {"camera": "cam1"},
    "camera.offline": {"camera": "cam1", "reason": "no_frames"},
    "tamper": {"device": "entry", "active": True},
    "face_path.disabled": {"reason": "camera_offline", "camera": "cam1"},
    "face_path.enabled": {"reason": "recovered"},
    "consent.withdrawn": {"person": "a" * 26, "channel": "kiosk", "templates_erased": 3},
    "lockout": {"door": "main", "scope": "pin", "until": "2026-01-01T00:05:00Z"},
    "compliance.alert": {"code": "capacity_warning", "value": 95000},
    "events_dropped": {"count": 12, "reason": "count"},
    "duress": {"door": "main", "method": "pin"},
}

FORBIDDEN = [
    "name",
    "display_name",
    "unit",
    "image",
    "frame",
    "photo",
    "embedding",
    "template",
    "score",
    "similarity",
    "distance",
    "card",
    "card_number",
    "facility",
    "pin",
    "pin_code",
    "person_id",
]


def test_every_type_has_a_sample_and_roundtrips() -> None:
    assert set(SAMPLES) == set(ev.EVENT_TYPES)
    for t, extra in SAMPLES.items():
        doc = {"type": t, **BASE, **extra}
        e = ev.EVENT_ADAPTER.validate_python(doc)
        assert e.type == t
        out = json.loads(e.to_json())
        assert out["schema_version"] == 1
        assert uuid.UUID(out["id"]).version == 7
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", out["ts"])
        assert ev.parse_event(e.to_json()) == e


@pytest.mark.parametrize("field", FORBIDDEN)
def test_no_identifying_field_can_be_expressed(field: str) -> None:
    for t, extra in SAMPLES.items():
        with pytest.raises(ValidationError):
            ev.EVENT_ADAPTER.validate_python({"type": t, **BASE, **extra, field: "x"})
    # nor does any property anywhere in the published schema carry such a name
    props: set[str] = set()
    for d in ev.json_schema()["$defs"].values():
        props |= set(d.get("properties", {}))
    assert field not in props


def test_values_cannot_smuggle_identity() -> None:
    base = {"type": "access.granted", **BASE, "door": "main", "method": "face"}
    bads: list[dict[str, Any]] = [
        {"person": "Zhang Wei"},
        {"person": "p-00042"},
        {"confidence": 0.93},
        {"confidence": "0.93"},
        {"door": "Zhang Wei's flat"},
        {"method": "1234"},
    ]
    for bad in bads:
        with pytest.raises(ValidationError):
            ev.EVENT_ADAPTER.validate_python({**base, **bad})
    with pytest.raises(ValidationError):
        ev.EVENT_ADAPTER.validate_python(
            {"type": "access.denied", **BASE, "door": "main", "reason": "wrong PIN 1234"}
        )
    for d in ev.json_schema()["$defs"].values():
        if d.get("type") == "object":
            assert d.get("additionalProperties") is False, d.get("title")


def test_committed_schema_matches_models() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == ev.schema_text(), (
        "docs/events.schema.json is stale: run python -m gateway.mqtt.events"
    )


def test_write_schema_regenerates(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    ev.write_schema(out)
    assert json.loads(out.read_text())["$id"] == ev.SCHEMA_ID


def test_uuid7_is_time_ordered_unique_and_versioned() -> None:
    ids = [ev.uuid7() for _ in range(5000)]
    assert len(set(ids)) == 5000
    assert ids == sorted(ids)
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    later = ev.uuid7_time_ms(ids[-1]) + 10_000
    u = ev.uuid7(later)
    assert ev.uuid7_time_ms(u) == later
    assert u > ids[-1]
    earlier = ev.uuid7(later - 60_000)  # clock stepped back: still monotonic
    assert earlier > u
    with pytest.raises(ValidationError):
        ev.DoorOpened(id=uuid.uuid4(), door="main", **BASE)


def test_ts_must_be_aware_and_is_utc() -> None:
    with pytest.raises(ValidationError):
        ev.DoorOpened(door="main", ts=dt.datetime(2026, 1, 1), **BASE)  # noqa: DTZ001
    tz8 = dt.timezone(dt.timedelta(hours=8))
    e = ev.DoorOpened(door="main", ts=dt.datetime(2026, 1, 1, 8, tzinfo=tz8), **BASE)
    assert json.loads(e.to_json())["ts"] == "2026-01-01T00:00:00.000Z"


def test_pseudonyms_unlinkable_across_epochs_resolvable_with_key() -> None:
    key = b"k" * 32
    people = [f"person-{i}" for i in range(200)]
    e0 = epoch_of(1_800_000_000.0)
    day0 = {p: pseudonym(p, key, e0) for p in people}
    day1 = {p: pseudonym(p, key, e0 + 1) for p in people}
    assert all(re.fullmatch(r"[a-z2-7]{26}", v) for v in day0.values())
    assert len(set(day0.values())) == len(people)
    # unlinkable: no person keeps a pseudonym across epochs; nothing shared between the sets
    assert not set(day0.values()) & set(day1.values())
    # another site's key gives different pseudonyms for the same epoch
    assert not set(day0.values()) & {pseudonym(p, b"x" * 32, e0) for p in people}
    # resolvable: the management side (with the key) maps back, per epoch
    for p in people[:20]:
        assert resolve(day0[p], people, key, e0) == p
        assert resolve(day1[p], people, key, e0 + 1) == p
        assert resolve(day0[p], people, key, e0 + 1) is None
    assert resolve(day0["person-1"], people, b"y" * 32, e0) is None


def test_pseudonymizer_rotates_with_clock() -> None:
    now = [1_800_000_000.0]
    pz = Pseudonymizer(b"s" * 32, epoch_s=3600, clock=lambda: now[0])
    a = pz("p1")
    now[0] += 10
    assert pz("p1") == a
    now[0] += 3600
    assert pz("p1") != a
    assert pz(None) is None


def test_topics() -> None:
    t = Topics("access", "site1", "gate1")
    assert t.event("access.granted") == "access/site1/gate1/events/access.granted"
    assert t.event("duress") == "access/site1/gate1/alarm/duress"
    assert t.status == "access/site1/gate1/status"
    assert t.command("unlock") == "access/site1/gate1/cmd/unlock"
    assert t.commands_wildcard == "access/site1/gate1/cmd/+"
    assert t.command_result == "access/site1/gate1/cmd_result"
    assert t.command_name("access/site1/gate1/cmd/purge") == "purge"
    assert t.command_name("access/site1/gate2/cmd/purge") is None
    for bad in [("a/#", "s", "g"), ("a", "s+", "g"), ("a", "s", ""), ("/a", "s", "g")]:
        with pytest.raises(ProtocolError):
            Topics(*bad)


def test_homeassistant_discovery_has_no_identity() -> None:
    t = Topics("access", "site1", "gate1")
    ha = HomeAssistant(t, ["main", "side"])
    msgs = ha.discovery()
    assert len(msgs) == 4
    assert all(retain for _, _, retain in msgs)
    cfg = json.loads(msgs[0][1])
    assert cfg["state_topic"] == "access/site1/gate1/ha/main/lock"
    granted = ev.AccessGranted(
        door="main", method="face", person="a" * 26, confidence="high", **BASE
    )
    [(topic, payload, _retain)] = ha.state_for(granted)
    doc = json.loads(payload)
    assert topic == "access/site1/gate1/ha/main/decision"
    assert doc["decision"] == "granted"
    assert "a" * 26 not in payload.decode()
    assert set(doc) == {"decision", "method", "reason", "ts"}
    assert ha.state_for(ev.DoorUnlocked(door="side", cause="remote", **BASE)) == [
        ("access/site1/gate1/ha/side/lock", b"unlocked", True)
    ]
    assert ha.state_for(ev.DoorOpened(door="side", **BASE)) == []


def test_docs_examples_validate() -> None:
    text = (REPO / "docs" / "events.md").read_text(encoding="utf-8")
    blocks = re.findall(r"### `([a-z_.]+)`\n\nTopic `([^`]+)`\n\n```json\n(.*?)\n```", text, re.S)
    assert {b[0] for b in blocks} == set(ev.EVENT_TYPES)
    t = Topics("access", "maple-court", "north-gate")
    for typ, topic, body in blocks:
        e = ev.parse_event(body)
        assert e.type == typ
        assert topic == t.event(typ)
