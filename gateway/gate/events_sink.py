"""Where the gate's events go: straight to the MQTT service, or into the durable outbox
(through the hand-off that keeps the event loop off a suspect store)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.mqtt import events as ev
from gateway.services.event_handoff import EventHandoff

if TYPE_CHECKING:
    from gateway.mqtt.client import MqttService
    from gateway.mqtt.outbox import Outbox

log = logging.getLogger(__name__)


class EventSink:
    """Publish events (never raises); without MQTT they are only logged."""

    def __init__(
        self,
        gate: str,
        mqtt: MqttService | None,
        outbox: Outbox | None,
        storage_suspect: Callable[[], bool],
    ) -> None:
        self.gate = gate
        self.mqtt = mqtt
        self.outbox = outbox
        self.emitted = 0
        self.listeners: list[Callable[[ev.BaseEvent], None]] = []
        """Called with each event as published (the web console's live feed)."""
        self._handoff = EventHandoff(self._queue, storage_suspect)
        self._handoff.always = True

    def emit(self, event: ev.BaseEvent) -> None:
        """Publish one event through the durable outbox (never raises)."""
        self.emitted += 1
        log.info("gate %s: event %s", self.gate, event.type)
        try:
            if self.mqtt is not None or self.outbox is not None:
                self._handoff(event)
        except Exception:
            log.exception("gate %s: event %s could not be queued", self.gate, event.type)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("gate %s: a listener failed on event %s", self.gate, event.type)

    def _queue(self, event: ev.BaseEvent) -> None:
        if self.mqtt is not None:
            self.mqtt.publish_event(event)
        elif self.outbox is not None:
            self.outbox.put(event)

    def health(self, out: dict[str, Any]) -> None:
        """The outbox's fields of the gate's status summary (none without MQTT)."""
        if self.outbox is None:
            return
        stats = self.outbox.stats()
        out["outbox"] = {
            k: getattr(stats, k)
            for k in ("pending", "in_memory", "journalled", "dropped_total", "journal_failed")
            if hasattr(stats, k)
        }
        out["outbox_degraded"] = self.outbox.degraded

    def close(self) -> None:
        """Stop the hand-off (shutdown)."""
        self._handoff.close()
