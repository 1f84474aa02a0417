"""Optional Home Assistant MQTT discovery: per door a lock-state sensor and the last decision.

No identity ever goes to Home Assistant: the decision sensor shows ``granted``/``denied`` with
the method and reason code only. State topics are ``{base}/ha/{door}/lock`` (``locked`` /
``unlocked``) and ``{base}/ha/{door}/decision`` (JSON), both retained.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from gateway import __version__
from gateway.mqtt.events import AccessDenied, AccessGranted, BaseEvent, DoorLocked, DoorUnlocked
from gateway.mqtt.topics import Topics

Message = tuple[str, bytes, bool]
"""(topic, payload, retain)"""


class HomeAssistant:
    """Builds discovery and state messages for the doors of one gate."""

    def __init__(
        self, topics: Topics, doors: Iterable[str], discovery_prefix: str = "homeassistant"
    ):
        self.topics = topics
        self.doors = sorted(set(doors))
        self.discovery_prefix = discovery_prefix

    def _uid(self, door: str, what: str) -> str:
        return f"ag_{self.topics.site}_{self.topics.gate}_{door}_{what}".replace("-", "_")

    def lock_topic(self, door: str) -> str:
        """Retained lock state of a door."""
        return f"{self.topics.base}/ha/{door}/lock"

    def decision_topic(self, door: str) -> str:
        """Retained last access decision of a door."""
        return f"{self.topics.base}/ha/{door}/decision"

    def discovery(self) -> list[Message]:
        """Discovery configs (retained) for every door."""
        device = {
            "identifiers": [f"access-gateway-{self.topics.site}-{self.topics.gate}"],
            "name": f"Gate {self.topics.gate}",
            "manufacturer": "access-gateway",
            "sw_version": __version__,
        }
        avail = [
            {
                "topic": self.topics.status,
                "value_template": "{{ value_json.state }}",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ]
        out: list[Message] = []
        for door in self.doors:
            lock_uid = self._uid(door, "lock")
            lock_cfg = {
                **_entity(f"{door} lock", lock_uid, self.lock_topic(door), avail, device),
                "device_class": "lock",
                # HA binary_sensor lock: ON means unlocked
                "payload_on": "unlocked",
                "payload_off": "locked",
            }
            dec_uid, dec_topic = self._uid(door, "decision"), self.decision_topic(door)
            dec_cfg = {
                **_entity(f"{door} last decision", dec_uid, dec_topic, avail, device),
                "value_template": "{{ value_json.decision }}",
                "json_attributes_topic": dec_topic,
                "icon": "mdi:door",
            }
            out.append(
                (f"{self.discovery_prefix}/binary_sensor/{lock_uid}/config", _json(lock_cfg), True)
            )
            out.append((f"{self.discovery_prefix}/sensor/{dec_uid}/config", _json(dec_cfg), True))
        return out

    def state_for(self, event: BaseEvent) -> list[Message]:
        """State updates implied by an event (empty when the event is not about a door state)."""
        if isinstance(event, DoorUnlocked):
            return [(self.lock_topic(event.door), b"unlocked", True)]
        if isinstance(event, DoorLocked):
            return [(self.lock_topic(event.door), b"locked", True)]
        if isinstance(event, AccessGranted | AccessDenied):
            doc = {
                "decision": "granted" if isinstance(event, AccessGranted) else "denied",
                "method": None if event.method is None else str(event.method.value),
                "reason": event.reason.value if isinstance(event, AccessDenied) else None,
                "ts": event.model_dump(mode="json")["ts"],
            }
            return [(self.decision_topic(event.door), _json(doc), True)]
        return []


def _entity(name: str, uid: str, state_topic: str, avail: Any, device: Any) -> dict[str, Any]:
    """The discovery keys every entity of a door has (its name, ids, state, availability)."""
    return {
        "name": name,
        "unique_id": uid,
        "object_id": uid,
        "state_topic": state_topic,
        "availability": avail,
        "device": device,
    }


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8")
