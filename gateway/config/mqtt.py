"""Configuration of the MQTT link: broker, outbox bounds, signed commands."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from gateway.config.base import SecretRef, Strict


class MqttConfig(Strict):
    """Anonymized events and signed commands over MQTT."""

    enabled: bool = Field(True, description="Publish events and accept commands.")
    url: str | None = Field(
        None,
        description="mqtt://host:1883 or mqtts://host:8883; unset means no broker "
        "(events stay in the outbox).",
    )
    topic_prefix: str = Field("access", description="First topic level.")
    client_id: str | None = Field(None, description="Client id; default access-<site>-<gate>.")
    username: str | None = Field(None, description="Broker user name.")
    password: SecretRef | None = Field(None, description="Broker password reference.")
    ca_file: Path | None = Field(None, description="CA bundle for TLS.")
    cert_file: Path | None = Field(None, description="Client certificate for TLS.")
    key: SecretRef | None = Field(None, description="Client private key reference for TLS.")
    protocol: Literal["auto", "5", "3.1.1"] = Field(
        "auto", description="MQTT protocol; auto tries 5 then 3.1.1."
    )
    keepalive_s: int = Field(30, ge=5, le=600, description="MQTT keepalive.")
    outbox_max_events: int = Field(
        100_000, ge=100, description="Outbox bound by count before events_dropped."
    )
    outbox_max_age_s: float = Field(
        7 * 86400, gt=0, description="Outbox bound by age before events_dropped."
    )
    command_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Trusted Ed25519 public keys for commands: key id -> base64 raw key.",
    )
    command_window_s: float = Field(
        120.0, ge=5, le=3600, description="Accepted clock skew / replay window for commands."
    )
    homeassistant_discovery: bool = Field(False, description="Publish Home Assistant discovery.")
    homeassistant_prefix: str = Field(
        "homeassistant", description="Home Assistant discovery topic prefix."
    )
    status_interval_s: float = Field(
        60.0, ge=5, le=3600, description="How often the retained status is republished."
    )
    reconnect_max_s: float = Field(
        60.0, ge=1, le=3600, description="Longest wait between reconnection attempts."
    )
    outbox_memory_max: int = Field(
        10_000, ge=100, description="Events buffered in memory while the database fails."
    )
    command_max_bytes: int = Field(
        65_536, ge=1024, le=4 * 1024 * 1024, description="Largest command accepted."
    )

    @field_validator("topic_prefix")
    @classmethod
    def _no_wildcards(cls, v: str) -> str:
        if not v or any(c in v for c in "#+") or v.startswith("/") or v.endswith("/"):
            raise ValueError("topic prefix must be non-empty without wildcards or edge slashes")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^mqtts?://[^/:]+(:\d+)?/?$", v):
            raise ValueError("expected mqtt://host[:port] or mqtts://host[:port]")
        return v
