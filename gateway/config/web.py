"""Configuration of the web console: where it listens, its certificate, sessions, lockout."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator

from gateway.config.base import SecretRef, Strict

SELF_SIGNED_KEY = "web-key.pem"
"""The self-signed certificate's private key in the state directory (no ``key`` configured)."""


class WebConfig(Strict):
    """The web console (people, consent, credentials, compliance), served over HTTPS."""

    enabled: bool = Field(False, description="Serve the web console from the daemon.")
    listen: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        min_length=1,
        description="IP addresses to bind (only these; never a wildcard unless listed).",
    )
    port: int = Field(8443, ge=1, le=65535, description="HTTPS port.")
    cert_file: Path | None = Field(
        None,
        description="TLS certificate chain (PEM); unset: a self-signed one is made at first "
        "start in the state directory and its SHA-256 fingerprint logged.",
    )
    key: SecretRef | None = Field(None, description="TLS private key reference (PEM).")
    session_minutes: int = Field(
        480, ge=5, le=7 * 24 * 60, description="Session lifetime (absolute, from login)."
    )
    idle_minutes: int = Field(30, ge=1, le=24 * 60, description="Session idle timeout.")
    login_max_failures: int = Field(
        5, ge=1, le=100, description="Failed logins of an account before it is locked."
    )
    lockout_minutes: int = Field(15, ge=1, le=24 * 60, description="Account lockout period.")
    login_attempts_per_minute: int = Field(
        20, ge=1, le=1000, description="Login attempts accepted per client address per minute."
    )

    @field_validator("listen")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for addr in v:
            ipaddress.ip_address(addr)  # ValueError names the bad address
        return v

    @model_validator(mode="after")
    def _cert_and_key(self) -> Self:
        if (self.cert_file is None) != (self.key is None):
            raise ValueError("give both 'cert_file' and 'key', or neither (self-signed)")
        return self
