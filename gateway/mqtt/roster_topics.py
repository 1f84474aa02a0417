"""MQTT topics of the compound roster: ``{prefix}/{site}/roster/{gate}/...``.

Per gate: ``manifest`` (retained, signed by the office), ``c/{first}`` (retained change
chunks), ``s/{part}`` (retained snapshot parts), ``ack`` (retained, the gate's
acknowledgement). The office's alerts go to ``{prefix}/{site}/roster/alerts``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.mqtt.topics import Topics


@dataclass(frozen=True)
class RosterTopics:
    """Every roster topic of one site."""

    prefix: str
    site: str

    def __post_init__(self) -> None:
        Topics(self.prefix, self.site, "roster")  # the same checks as the gate's topics

    @property
    def base(self) -> str:
        """``{prefix}/{site}/roster``."""
        return f"{self.prefix}/{self.site}/roster"

    def gate(self, gate: str, suffix: str) -> str:
        """One of a gate's roster topics (``manifest``, ``c/N``, ``s/N``, ``ack``)."""
        Topics(self.prefix, self.site, gate)
        return f"{self.base}/{gate}/{suffix}"

    def gate_wildcard(self, gate: str) -> str:
        """Everything the office publishes for ``gate`` (and its own ack)."""
        return self.gate(gate, "#")

    @property
    def acks_wildcard(self) -> str:
        """Every gate's acknowledgement."""
        return f"{self.base}/+/ack"

    @property
    def alerts(self) -> str:
        """The office's roster alerts (anonymized)."""
        return f"{self.base}/alerts"

    def split(self, topic: str) -> tuple[str, str] | None:
        """``(gate, suffix)`` of a roster topic, None for another topic."""
        head = self.base + "/"
        if not topic.startswith(head):
            return None
        gate, _, suffix = topic[len(head) :].partition("/")
        return (gate, suffix) if gate and suffix else None
