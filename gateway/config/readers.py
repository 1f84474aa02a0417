"""Configuration of card readers and keypads (OSDP or Wiegand)."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from gateway.config.base import SecretRef, Strict


class ReaderConfig(Strict):
    """A card reader / keypad on OSDP or Wiegand."""

    url: str = Field(
        description="osdp:///dev/ttyUSB0?baud=9600, osdp+socket://host:port, "
        "or wiegand+gpio:///dev/gpiochip0?d0=17&d1=27."
    )
    protocol: Literal["osdp", "wiegand"] = Field(description="Reader protocol.")
    address: int = Field(101, ge=0, le=126, description="OSDP PD address.")
    baud: int = Field(9600, description="Serial baud rate (OSDP over RS-485).")
    scbk: SecretRef | None = Field(
        None, description="OSDP Secure Channel base key (16 bytes, hex) reference."
    )
    install_mode: bool = Field(
        False,
        description="Allow the OSDP install-mode key (SCBK-D) to provision the reader. "
        "Only while installing; logged at WARNING.",
    )
    pin_timeout_s: float = Field(5.0, gt=0, le=60, description="Inter-digit timeout.")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not re.match(r"^(osdp(\+socket)?|wiegand\+gpio|wiegand\+feed)://", v):
            raise ValueError(
                "expected osdp:///dev/..., osdp+socket://host:port or wiegand+gpio://..."
            )
        return v

    @model_validator(mode="after")
    def _protocol_matches_url(self) -> Self:
        if not self.url.startswith(self.protocol):
            raise ValueError(f"url scheme does not match protocol {self.protocol!r}")
        if self.protocol == "osdp" and self.scbk is None and not self.install_mode:
            raise ValueError(
                "OSDP readers need a Secure Channel key (scbk) unless install_mode is on"
            )
        return self
