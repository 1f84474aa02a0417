"""Configuration of doors (lock, inputs, allowed methods) and of the access groups."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator

from gateway.access.decision import LivenessPolicy, Method
from gateway.config.base import Strict
from gateway.config.pairs import CameraPairConfig


class LockType(StrEnum):
    """What the lock does without power."""

    FAIL_SECURE = "fail_secure"
    FAIL_SAFE = "fail_safe"


class RelayBinding(Strict):
    """Where the lock relay is driven from."""

    kind: Literal["osdp", "gpio", "none"] = Field(
        "osdp", description="'osdp': an output of a reader; 'gpio': a GPIO line; 'none': no lock."
    )
    reader: str | None = Field(None, description="Reader whose output drives the relay (osdp).")
    output: int = Field(0, ge=0, le=15, description="Output number on the reader (osdp).")
    chip: str = Field("/dev/gpiochip0", description="GPIO chip device (gpio).")
    line: int | None = Field(None, ge=0, description="GPIO line offset (gpio).")
    active_low: bool = Field(False, description="Relay energised by a low level (gpio).")
    lock_type: LockType = Field(
        LockType.FAIL_SECURE,
        description="fail_secure stays locked without power; fail_safe releases without power.",
    )


class InputBinding(Strict):
    """A door input: contact, exit button or tamper."""

    kind: Literal["osdp", "gpio", "none"] = Field(
        "none", description="'osdp': an input of a reader; 'gpio': a GPIO line; 'none': absent."
    )
    reader: str | None = Field(None, description="Reader reporting the input (osdp).")
    input: int = Field(0, ge=0, le=15, description="Input number on the reader (osdp).")
    chip: str = Field("/dev/gpiochip0", description="GPIO chip device (gpio).")
    line: int | None = Field(None, ge=0, description="GPIO line offset (gpio).")
    normally_closed: bool = Field(
        False, description="NC wiring: the circuit opens when the input is active."
    )
    debounce_ms: int = Field(50, ge=0, le=2000, description="Debounce time.")


class DoorConfig(Strict):
    """One door (or gate leaf) with its lock, inputs and allowed methods."""

    reader: str | None = Field(None, description="Reader (card/keypad) at this door.")
    camera: str | None = Field(None, description="Camera watching this door's approach.")
    pair: CameraPairConfig | None = Field(
        None,
        description="A second view of the approach (stereo or NIR) for the 3-D liveness "
        "check; face fails closed while either camera is down.",
    )
    relay: RelayBinding = Field(default_factory=RelayBinding, description="Lock relay.")
    contact: InputBinding = Field(default_factory=InputBinding, description="Door contact.")
    exit_button: InputBinding = Field(
        default_factory=InputBinding, description="Request-to-exit button."
    )
    tamper: InputBinding = Field(default_factory=InputBinding, description="Tamper switch.")
    unlock_seconds: float = Field(5.0, gt=0, le=120, description="How long a grant unlocks.")
    held_open_seconds: float = Field(
        30.0, gt=0, le=3600, description="Open longer than this raises a held-open alarm."
    )
    methods: list[Method] = Field(
        default_factory=lambda: [Method.CARD, Method.PIN],
        min_length=1,
        description="Allowed methods. At least one must work without the face path (Art. 10).",
    )
    liveness: LivenessPolicy = Field(
        LivenessPolicy.REQUIRED, description="Passive liveness policy for face at this door."
    )
    access_groups: list[str] = Field(
        default_factory=lambda: ["residents"],
        description="Access groups whose members may pass this door.",
    )
    anti_passback_pair: str | None = Field(
        None, description="Paired door (entry/exit) for anti-passback."
    )
    anti_passback: Literal["off", "soft", "hard"] = Field(
        "off", description="soft: grant but flag; hard: deny a repeated entry."
    )
    anti_passback_forget_after_s: float | None = Field(
        None, gt=0, description="Forget an unmatched entry after this long (None: never)."
    )
    second_factor_timeout_s: float = Field(
        10.0, gt=0, le=120, description="Time allowed for the second factor of a combination."
    )
    roles: list[Literal["resident", "visitor", "staff"]] | None = Field(
        None, description="Roles allowed at this door; unset allows every role."
    )

    @field_validator("methods")
    @classmethod
    def _no_duplicates(cls, v: list[Method]) -> list[Method]:
        if len(set(v)) != len(v):
            raise ValueError("methods are listed twice")
        if not any(not m.needs_face for m in v):
            raise ValueError(
                "face must never be the only way in (Art. 10): add card, pin or card+pin"
            )
        return v

    @property
    def uses_face(self) -> bool:
        """True when some allowed method involves the face."""
        return any(m.needs_face for m in self.methods)


class TimeRange(Strict):
    """A daily time window; may cross midnight."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        min_length=1, description="Weekdays."
    )
    start: dt.time = Field(description="Start time (local).")
    end: dt.time = Field(description="End time (local); before start means past midnight.")


class TimeOfDayRange(Strict):
    """A time window within one day; may cross midnight."""

    start: dt.time = Field(description="Start time (local).")
    end: dt.time = Field(description="End time (local); before start means past midnight.")


class AccessGroupConfig(Strict):
    """Who may pass when."""

    schedule: list[TimeRange] = Field(
        default_factory=list, description="Allowed windows; empty means always."
    )
    holidays: list[dt.date] = Field(default_factory=list, description="Dates with no access.")
    holiday_hours: dict[dt.date, list[TimeOfDayRange]] = Field(
        default_factory=dict, description="Special hours on a date instead of closed."
    )
