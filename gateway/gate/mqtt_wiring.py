"""The gate's MQTT side: the durable outbox, the signed command processor and the MQTT
service (none of it when MQTT is disabled; no service but the outbox without a broker)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.config.root import GatewayConfig
from gateway.daemon.supervisor import ServiceSpec
from gateway.privacy import audit
from gateway.store.readonly import open_extra

if TYPE_CHECKING:
    from gateway.mqtt.client import MqttService
    from gateway.mqtt.commands import CommandProcessor
    from gateway.mqtt.outbox import Outbox
    from gateway.mqtt.topics import Topics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MqttParts:
    """What the gate publishes through and takes commands from."""

    topics: Topics
    outbox: Outbox
    commands: CommandProcessor
    service: MqttService | None  # None without a broker: events wait in the outbox


def build_mqtt(
    cfg: GatewayConfig,
    *,
    read_only: bool,
    health: Callable[[], dict[str, Any]],
    add_service: Callable[[ServiceSpec], None],
) -> MqttParts | None:
    """Outbox (own connection), command processor and MQTT service."""
    if not cfg.mqtt.enabled:
        log.info("gate %s: MQTT disabled; events are only logged", cfg.site.gate)
        return None
    from gateway.mqtt.client import MqttService
    from gateway.mqtt.commands import CommandProcessor
    from gateway.mqtt.fleet import settings_from_config
    from gateway.mqtt.outbox import Outbox
    from gateway.mqtt.topics import Topics

    topics = Topics(cfg.mqtt.topic_prefix, cfg.site.id, cfg.site.gate)
    outbox = Outbox(
        # Used on the event loop: a short lock wait, then the in-memory buffer.
        open_extra(cfg.storage.database_path, busy_timeout_ms=200, read_only=read_only),
        topics,
        max_events=cfg.mqtt.outbox_max_events,
        max_age_s=cfg.mqtt.outbox_max_age_s,
        memory_max=cfg.mqtt.outbox_memory_max,
    )
    # Also used on the event loop (nonces, audit of rejected commands): short wait.
    commands_db = open_extra(cfg.storage.database_path, busy_timeout_ms=200, read_only=read_only)
    commands = CommandProcessor(
        commands_db,
        cfg.mqtt.command_keys,
        window_s=cfg.mqtt.command_window_s,
        max_bytes=cfg.mqtt.command_max_bytes,
        site=cfg.site.id,
        gate=cfg.site.gate,
        audit=audit.appender(commands_db),
    )
    if cfg.mqtt.url is None:
        log.warning("gate %s: no MQTT broker configured; events wait in the outbox", cfg.site.gate)
        # with a broker, MqttService.run runs this loop itself
        add_service(ServiceSpec("outbox", outbox.persist_loop))
        return MqttParts(topics, outbox, commands, None)
    settings = settings_from_config(cfg)
    assert settings is not None  # noqa: S101 - url checked above
    ha = None
    if cfg.mqtt.homeassistant_discovery:
        from gateway.mqtt.homeassistant import HomeAssistant

        ha = HomeAssistant(topics, list(cfg.doors), cfg.mqtt.homeassistant_prefix)
    service = MqttService(
        settings,
        topics,
        outbox,
        commands,
        health=health,
        homeassistant=ha,
    )
    add_service(ServiceSpec("mqtt", service.run))
    return MqttParts(topics, outbox, commands, service)
