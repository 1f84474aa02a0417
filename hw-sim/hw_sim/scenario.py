"""Scenario files (YAML): timed steps on the simulated hardware plus expectations on what
the gateway does (MQTT events, relay, LED, door), validated with pydantic.

Errors name the file, the key path and the problem, e.g.
``scenarios/x.yaml: steps.2.action: unknown action 'opne-door'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from hw_sim.config import format_validation_error
from hw_sim.sim import ACTIONS

Window = tuple[float, float]


class ScenarioError(ValueError):
    """A scenario file is unreadable or invalid."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Card(_Model):
    number: int = Field(ge=0)
    facility: int = Field(0, ge=0)
    format: str = "H10301"


class PersonFixture(_Model):
    """Someone the gateway must know before the scenario (provisioned by the harness)."""

    ref: str = Field(description="corpus reference: resident1.., or an LFW name")
    face: bool = False
    consent: bool = True
    card: Card | None = None
    pin: str | None = Field(None, pattern=r"^[0-9]{4,8}$")
    duress_pin: str | None = Field(None, pattern=r"^[0-9]{4,8}$")
    doors: list[str] = Field(default_factory=lambda: ["main-gate", "side-door"])
    office: bool = Field(
        False,
        description="enrolled at the compound's roster office (the gate learns of them "
        "from the roster only)",
    )


class VisitorPin(_Model):
    pin: str = Field(pattern=r"^[0-9]{4,8}$")
    doors: list[str] = Field(default_factory=lambda: ["main-gate"])
    valid_s: float = Field(3600, gt=0)


class Fixtures(_Model):
    people: list[PersonFixture] = Field(default_factory=list)
    visitor_pins: list[VisitorPin] = Field(default_factory=list)


DOOR_ACTIONS = ("open-door", "hold-door")


class Step(_Model):
    """One timed step: a simulator action or a harness action, ``at`` seconds after start."""

    at: float = Field(ge=0)
    action: str | None = None
    harness: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    args: dict[str, Any] = Field(default_factory=dict)
    await_unlock_s: float | None = Field(
        None,
        gt=0,
        le=60,
        description="door actions: from ``at``, first wait up to this long for the door's relay"
        " to unlock, as a person pushes when the lock clicks (a busy machine may grant late)",
    )

    @model_validator(mode="after")
    def _one(self) -> Step:
        if (self.action is None) == (self.harness is None):
            raise ValueError("a step needs exactly one of 'action' (simulator) or 'harness'")
        if self.action is not None and self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r} (known: {', '.join(ACTIONS)})")
        if self.await_unlock_s is not None and (
            self.action not in DOOR_ACTIONS or not isinstance(self.args.get("door"), str)
        ):
            raise ValueError(
                f"await_unlock_s: only for a door action ({', '.join(DOOR_ACTIONS)}) with args.door"
            )
        return self


def _window(v: Any) -> Any:
    if isinstance(v, int | float):
        return (0.0, float(v))
    return v


class _Timed(_Model):
    within: Window | None = Field(
        None, description="[from, to] seconds (a number = [0, n]); default: whole scenario"
    )
    after_step: int | None = Field(None, ge=0, description="window relative to this step's time")

    @field_validator("within", mode="before")
    @classmethod
    def _w(cls, v: Any) -> Any:
        return _window(v)

    @field_validator("within")
    @classmethod
    def _order(cls, v: Window | None) -> Window | None:
        if v is not None and v[0] > v[1]:
            raise ValueError("within: 'from' is after 'to'")
        return v


class EventExpect(_Timed):
    """At least ``count`` (default 1) events of this type whose fields match."""

    event: str = Field(pattern=r"^[a-z_]+(\.[a-z_]+)*$")
    fields: dict[str, Any] = Field(default_factory=dict)
    count: int = Field(1, ge=1)
    exactly: bool = False


class AbsentExpect(_Timed):
    """No event of this type (with these fields) in the window."""

    absent: str = Field(pattern=r"^[a-z_*]+(\.[a-z_*]+)*$")
    fields: dict[str, Any] = Field(default_factory=dict)


class HardwareExpect(_Timed):
    """Simulated hardware seen in this state (``never: true``: never seen in it)."""

    hardware: dict[str, Any]
    never: bool = False

    @field_validator("hardware")
    @classmethod
    def _keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        allowed = {"door", "relay", "led", "buzzer", "text", "open", "forced", "held"}
        if "door" not in v:
            raise ValueError("hardware: name the door (door: NAME)")
        extra = set(v) - allowed
        if extra:
            raise ValueError(f"hardware: unknown keys {sorted(extra)} (allowed: {sorted(allowed)})")
        return v


class SequenceExpect(_Timed):
    """These events, in this order (others may be interleaved)."""

    sequence: list[EventExpect] = Field(min_length=2)


class NeverPublishedExpect(_Model):
    """None of these strings appears in any MQTT topic or payload ({resident1} resolved)."""

    never_published: list[str] = Field(min_length=1)


def _kind(v: Any) -> str | None:
    if isinstance(v, dict):
        for key in ("event", "absent", "hardware", "sequence", "never_published"):
            if key in v:
                return key
        return None
    return type(v).__name__.lower().replace("expect", "")


Expectation = Annotated[
    Annotated[EventExpect, Tag("event")]
    | Annotated[AbsentExpect, Tag("absent")]
    | Annotated[HardwareExpect, Tag("hardware")]
    | Annotated[SequenceExpect, Tag("sequence")]
    | Annotated[NeverPublishedExpect, Tag("never_published")],
    Discriminator(
        _kind,
        custom_error_type="expectation_kind",
        custom_error_message=(
            "an expectation needs one of: event, absent, hardware, sequence, never_published"
        ),
    ),
]


class Scenario(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    requires: list[str] = Field(default_factory=list)
    pending: str | None = Field(None, description="reason; the scenario is reported as pending")
    fixtures: Fixtures = Field(default_factory=Fixtures)
    duration: float | None = Field(None, gt=0, le=600)
    decision_step: int | None = Field(None, ge=0, description="step starting time-to-decision")
    steps: list[Step] = Field(min_length=1)
    expect: list[Expectation] = Field(min_length=1)

    @model_validator(mode="after")
    def _refs(self) -> Scenario:
        for i, e in enumerate(self.expect):
            items = e.sequence if isinstance(e, SequenceExpect) else [e]
            for it in items:
                step = getattr(it, "after_step", None)
                if step is not None and step >= len(self.steps):
                    raise ValueError(f"expect.{i}.after_step: there is no step {step}")
        if self.decision_step is not None and self.decision_step >= len(self.steps):
            raise ValueError(f"decision_step: there is no step {self.decision_step}")
        return self

    @property
    def total_duration(self) -> float:
        """Observation time: explicit, or the last step (at its latest) + the widest window +
        1 s."""
        if self.duration is not None:
            return self.duration
        latest = [s.at + (s.await_unlock_s or 0.0) for s in self.steps]
        ends = [max(latest) + 3.0]
        for e in self.expect:
            if isinstance(e, NeverPublishedExpect) or e.within is None:
                continue
            base = latest[e.after_step] if e.after_step is not None else 0.0
            ends.append(base + e.within[1])
        return max(ends) + 1.0

    @property
    def harness_actions(self) -> list[str]:
        return [s.harness for s in self.steps if s.harness is not None]


def parse_scenario(raw: Any, source: str = "<scenario>") -> Scenario:
    """Validate already-loaded YAML data."""
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(format_validation_error(source, exc)) from None


def load_scenario(path: Path) -> Scenario:
    """Read and validate one scenario file."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ScenarioError(
            f"{path}: (top level): a scenario is a mapping with name, steps, expect"
        )
    return parse_scenario(raw, str(path))


def scenario_paths(args: list[Path]) -> list[Path]:
    """Expand directories to their ``*.yaml`` files (sorted)."""
    out: list[Path] = []
    for p in args:
        out.extend(sorted(p.glob("*.yaml")) if p.is_dir() else [p])
    return out


Status = Literal["pass", "fail", "pending", "error", "unsupported", "skipped"]
