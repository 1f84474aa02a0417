"""Configuration of the compound roster (issue 15): the office that holds it, the gates
that follow it. See README "One roster for the compound"."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from gateway.config.base import Name, Strict


class RosterGateConfig(Strict):
    """One gate the office serves."""

    public_key: str = Field(
        description="The gate's X25519 public key (base64 of 32 bytes), as printed by "
        "`gateway roster gate-key` on that gate."
    )
    ack_key: str | None = Field(
        None,
        description="The gate's Ed25519 key that signs its acknowledgements (base64 of 32 "
        "bytes), the second key `gateway roster gate-key` prints; without it the gate's "
        "acks are refused.",
    )


class RosterConfig(Strict):
    """The roster role of this gateway instance.

    ``off``: the gate's own database is authoritative (a single-gate site, or a gate not
    moved to the roster yet: ``sync_person`` and the fan-out keep working). ``office``: this
    instance holds the authoritative roster and publishes it to ``gates``. ``gate``: this
    gate follows the office's roster (the office's people are applied here, no name or unit).
    """

    role: Literal["off", "office", "gate"] = Field("off", description="off, office or gate.")
    gates: dict[Name, RosterGateConfig] = Field(
        default_factory=dict,
        description="Office: the gates served (more with `gateway roster add-gate`).",
    )
    signing_key: Path | None = Field(
        None, description="Office: Ed25519 private key (PEM, 0600) that signs the manifests."
    )
    office_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Gate: trusted office Ed25519 public keys (key id -> base64); "
        "empty means mqtt.command_keys.",
    )
    erasure_ack_s: float = Field(
        300.0,
        ge=1,
        le=7 * 86400,
        description="Office: alert when an erasure or revocation is not acknowledged by "
        "every gate within this time.",
    )
    startup_sync_s: float = Field(
        5.0,
        ge=0,
        le=120,
        description="Gate: how long start-up waits for the roster before the face path "
        "opens; face stays closed until the roster is applied.",
    )
    fetch_wait_s: float = Field(
        5.0, ge=0.2, le=120, description="Gate: how long to wait for the changes a manifest names."
    )
    poll_s: float = Field(
        0.25, ge=0.05, le=60, description="Office: how often the database is checked for changes."
    )
    max_pending_changes: int = Field(
        5000,
        ge=10,
        le=1_000_000,
        description="Office: unacknowledged changes kept per gate; a gate further behind "
        "gets a full snapshot.",
    )
    chunk_bytes: int = Field(
        256 * 1024,
        ge=4096,
        le=16 * 1024 * 1024,
        description="Largest retained change or snapshot message.",
    )

    @model_validator(mode="after")
    def _office_signs(self) -> RosterConfig:
        if self.role == "office" and self.signing_key is None:
            raise ValueError("roster.signing_key: an office must have a manifest signing key")
        return self
