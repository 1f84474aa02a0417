"""MQTT topic layout: ``{prefix}/{site}/{gate}/...``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.errors import ProtocolError

_LEVEL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _check_level(what: str, value: str) -> str:
    if not _LEVEL.match(value):
        raise ProtocolError(f"MQTT topic {what} {value!r} must be 1-64 of [A-Za-z0-9_.-]")
    return value


@dataclass(frozen=True)
class Topics:
    """Every topic one gate publishes or subscribes to."""

    prefix: str
    site: str
    gate: str

    def __post_init__(self) -> None:
        if (
            not self.prefix
            or any(c in self.prefix for c in "#+")
            or self.prefix.strip("/") != (self.prefix)
        ):
            raise ProtocolError(f"MQTT topic prefix {self.prefix!r} is invalid")
        _check_level("site", self.site)
        _check_level("gate", self.gate)

    @property
    def base(self) -> str:
        """``{prefix}/{site}/{gate}``."""
        return f"{self.prefix}/{self.site}/{self.gate}"

    def event(self, event_type: str) -> str:
        """Topic of one event type; duress goes to its own alarm topic."""
        if event_type == "duress":
            return self.duress
        return f"{self.base}/events/{_check_level('event type', event_type)}"

    @property
    def events_wildcard(self) -> str:
        """Subscription matching every event of this gate."""
        return f"{self.base}/events/+"

    @property
    def duress(self) -> str:
        """Duress alarms have their own topic so that they can be routed separately."""
        return f"{self.base}/alarm/duress"

    @property
    def status(self) -> str:
        """Retained gate status (online/offline, version, uptime, health)."""
        return f"{self.base}/status"

    @property
    def withdrawal(self) -> str:
        """Consent withdrawals this gate fans out to the site's other gates."""
        return f"{self.base}/withdrawal"

    @property
    def withdrawals_wildcard(self) -> str:
        """Subscription for every gate's withdrawal fan-out (this site)."""
        return f"{self.prefix}/{self.site}/+/withdrawal"

    @property
    def enrolled(self) -> str:
        """Retained count of people with face data on this gate (never an identity); not
        touched by the Last Will, so a gate that went down keeps its last count."""
        return f"{self.base}/enrolled"

    def command(self, name: str) -> str:
        """Topic a management system publishes command ``name`` to."""
        return f"{self.base}/cmd/{_check_level('command', name)}"

    @property
    def commands_wildcard(self) -> str:
        """Subscription for every command of this gate."""
        return f"{self.base}/cmd/+"

    @property
    def command_result(self) -> str:
        """Where results of commands are published."""
        return f"{self.base}/cmd_result"

    def command_name(self, topic: str) -> str | None:
        """The command name in ``topic`` or None when it is not one of our command topics."""
        head = f"{self.base}/cmd/"
        if not topic.startswith(head):
            return None
        name = topic[len(head) :]
        return name if _LEVEL.match(name) else None
