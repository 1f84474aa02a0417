"""Anonymized MQTT event schema (pydantic).

Every event carries ``schema_version``, a UUIDv7 ``id`` (time ordered; duplicates after a
redelivery are recognisable by it), ``ts`` (RFC 3339, UTC), ``site``, ``gate`` and ``type``.
Models forbid unknown fields and every free-form value is an enum, a bounded name or a
pseudonym, so a name, unit, image, embedding, exact score, card number or PIN cannot be
expressed. Regenerate ``docs/events.schema.json`` with ``python -m gateway.mqtt.events``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
import time
import uuid
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_serializer, field_validator

from gateway.mqtt.pseudonym import PSEUDONYM_PATTERN

SCHEMA_VERSION: Literal[1] = 1
SCHEMA_ID = "https://access-gateway.local/schemas/events.schema.json"

_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Name = Annotated[str, Field(pattern=_NAME, description="Configured door/reader/camera name.")]
Pseudonym = Annotated[
    str,
    Field(
        pattern=PSEUDONYM_PATTERN,
        description="Rotating pseudonym (truncated HMAC of the person id under the site "
        "key, changes every epoch); never a name or id.",
    ),
]

# ---------------------------------------------------------------------------------------
# UUIDv7 (RFC 9562): 48-bit unix ms, version, 74 random bits; monotonic within a process.

_uuid_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
_RAND_BITS = 74


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A new UUIDv7; strictly increasing within this process (counter in the random part)."""
    global _last_ms, _last_rand
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    with _uuid_lock:
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
            if rand >= 1 << _RAND_BITS:
                ms += 1
                rand = int.from_bytes(os.urandom(10), "big") >> 7
        else:
            # top bit clear leaves room for the per-ms counter
            rand = int.from_bytes(os.urandom(10), "big") >> 7
        _last_ms, _last_rand = ms, rand
    rand_a = rand >> 62
    rand_b = rand & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def uuid7_time_ms(u: uuid.UUID) -> int:
    """Unix milliseconds embedded in a UUIDv7."""
    return u.int >> 80


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---------------------------------------------------------------------------------------
# Enumerations


class AccessMethod(StrEnum):
    """How the person tried to pass."""

    FACE = "face"
    CARD = "card"
    PIN = "pin"
    CARD_PIN = "card+pin"
    FACE_CARD = "face+card"
    FACE_PIN = "face+pin"


class DenyReason(StrEnum):
    """Why access was denied (no identity, no score)."""

    UNKNOWN_FACE = "unknown_face"
    LOW_QUALITY = "low_quality"
    SPOOF_SUSPECTED = "spoof_suspected"
    OUTSIDE_SCHEDULE = "outside_schedule"
    LOCKED_OUT = "locked_out"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    NO_CONSENT = "no_consent"
    INVALID_CREDENTIAL = "invalid_credential"
    UNKNOWN_CARD = "unknown_card"
    REVOKED = "revoked"
    FACE_MISMATCH = "face_mismatch"
    STALE_DECISION = "stale_decision"
    ANTI_PASSBACK = "anti_passback"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    SECOND_FACTOR_TIMEOUT = "second_factor_timeout"
    NO_ACCESS_GROUP = "no_access_group"
    DOOR_DISABLED = "door_disabled"
    FACE_PATH_DOWN = "face_path_down"
    PRIVATE_SPACE = "private_space"
    INVALID_PIN = "invalid_pin"
    HOLIDAY = "holiday"
    CREDENTIAL_MISMATCH = "credential_mismatch"
    NOT_PERMITTED = "not_permitted"
    VISITOR_PIN_USED_UP = "visitor_pin_used_up"


class Confidence(StrEnum):
    """Coarse band of a face match (never the score)."""

    HIGH = "high"
    MEDIUM = "medium"


class UnlockCause(StrEnum):
    """Why the relay released."""

    ACCESS = "access"
    EXIT_BUTTON = "exit_button"
    REMOTE = "remote"
    SCHEDULE = "schedule"
    FAIL_SAFE = "fail_safe"
    EMERGENCY = "emergency"


class DeviceReason(StrEnum):
    """Why a reader or camera went offline."""

    TIMEOUT = "timeout"
    DISCONNECTED = "disconnected"
    SECURE_CHANNEL_FAILED = "secure_channel_failed"
    IO_ERROR = "io_error"
    NO_FRAMES = "no_frames"
    SHUTDOWN = "shutdown"
    UNKNOWN = "unknown"


class FacePathReason(StrEnum):
    """Why the face path changed state (PIN/card keep working either way)."""

    CAMERA_OFFLINE = "camera_offline"
    MODEL_ERROR = "model_error"
    OPERATOR = "operator"
    IMPACT_ASSESSMENT_MISSING = "impact_assessment_missing"
    PRIVATE_SPACE = "private_space"
    OVERLOAD = "overload"
    RECOVERED = "recovered"
    CONFIG = "config"


class WithdrawalChannel(StrEnum):
    """Where a consent withdrawal came from."""

    KIOSK = "kiosk"
    APP = "app"
    PAPER = "paper"
    WEB = "web"
    OPERATOR = "operator"
    MQTT = "mqtt"
    CLI = "cli"
    GATE = "gate"
    COMPOUND = "compound"  # fanned out from another gate of the site


class LockoutScope(StrEnum):
    """What was locked out after repeated failures."""

    PIN = "pin"
    CARD = "card"
    FACE = "face"
    READER = "reader"


class ComplianceCode(StrEnum):
    """Compliance alerts raised by the gateway."""

    CAPACITY_WARNING = "capacity_warning"
    FILING_REQUIRED = "filing_required"
    IMPACT_ASSESSMENT_MISSING = "impact_assessment_missing"
    RETENTION_OVERDUE = "retention_overdue"
    AUDIT_CHAIN_BROKEN = "audit_chain_broken"
    RENOTICE_REQUIRED = "renotice_required"
    MINOR_WITHOUT_GUARDIAN = "minor_without_guardian"
    PRIVATE_SPACE_CAMERA = "private_space_camera"


class DropReason(StrEnum):
    """Which outbox bound discarded events."""

    COUNT = "count"
    AGE = "age"
    MEMORY = "memory"


# ---------------------------------------------------------------------------------------
# Models


class _Event(BaseModel):
    """Fields common to every event."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    schema_version: Literal[1] = 1
    type: str
    id: uuid.UUID = Field(default_factory=uuid7, description="UUIDv7, unique per event.")
    ts: dt.datetime = Field(default_factory=_now, description="RFC 3339 UTC time.")
    site: Name
    gate: Name

    @field_validator("id")
    @classmethod
    def _v7(cls, v: uuid.UUID) -> uuid.UUID:
        if v.version != 7:
            raise ValueError("id must be a UUIDv7")
        return v

    @field_validator("ts")
    @classmethod
    def _utc(cls, v: dt.datetime) -> dt.datetime:
        if v.tzinfo is None:
            raise ValueError("ts must carry a timezone (UTC)")
        v = v.astimezone(dt.UTC)
        return v.replace(microsecond=v.microsecond // 1000 * 1000)  # as published (ms)

    @field_serializer("ts")
    def _ts_rfc3339(self, v: dt.datetime) -> str:
        return v.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    @field_serializer("id")
    def _id_str(self, v: uuid.UUID) -> str:
        return str(v)

    def to_json(self) -> bytes:
        """Compact JSON payload as published."""
        return self.model_dump_json().encode("utf-8")


class AccessGranted(_Event):
    """A door was opened for someone (identity only as a rotating pseudonym)."""

    type: Literal["access.granted"] = "access.granted"
    door: Name
    method: AccessMethod
    person: Pseudonym | None = None
    confidence: Confidence | None = Field(
        None, description="Face match band for face methods; null for card/PIN."
    )


class AccessDenied(_Event):
    """Access was refused; reason is a code, never a score."""

    type: Literal["access.denied"] = "access.denied"
    door: Name
    method: AccessMethod | None = None
    reason: DenyReason
    person: Pseudonym | None = None
    confidence: Confidence | None = None


class _DoorEvent(_Event):
    door: Name


class DoorOpened(_DoorEvent):
    """Door contact opened."""

    type: Literal["door.opened"] = "door.opened"


class DoorClosed(_DoorEvent):
    """Door contact closed."""

    type: Literal["door.closed"] = "door.closed"


class DoorHeldOpen(_DoorEvent):
    """Door stayed open longer than allowed."""

    type: Literal["door.held_open"] = "door.held_open"
    seconds: float = Field(ge=0, le=86_400 * 7)


class DoorForced(_DoorEvent):
    """Door opened without a release (forced)."""

    type: Literal["door.forced"] = "door.forced"


class TailgatingSuspected(_DoorEvent):
    """More people passed than were granted (e.g. two faces, one unlock)."""

    type: Literal["door.tailgating_suspected"] = "door.tailgating_suspected"
    people_seen: int = Field(ge=2, le=100)
    grants: int = Field(ge=0, le=100)


class LivenessFailedAfterGrant(_DoorEvent):
    """A face recognised at this door failed liveness later in the same approach: no new
    decision (nobody refused), but the office sees it (a spoof that passed at first looks
    like this). No person, no score."""

    type: Literal["door.liveness_failed_after_grant"] = "door.liveness_failed_after_grant"


class DoorUnlocked(_DoorEvent):
    """Relay released."""

    type: Literal["door.unlocked"] = "door.unlocked"
    cause: UnlockCause
    seconds: float | None = Field(None, ge=0, le=86_400)


class DoorLocked(_DoorEvent):
    """Relay engaged again."""

    type: Literal["door.locked"] = "door.locked"


class ReaderOnline(_Event):
    """A card reader / keypad came online."""

    type: Literal["reader.online"] = "reader.online"
    reader: Name


class ReaderOffline(_Event):
    """A card reader / keypad went offline."""

    type: Literal["reader.offline"] = "reader.offline"
    reader: Name
    reason: DeviceReason = DeviceReason.UNKNOWN


class CameraOnline(_Event):
    """A camera delivers frames again."""

    type: Literal["camera.online"] = "camera.online"
    camera: Name


class CameraOffline(_Event):
    """A camera stopped delivering frames."""

    type: Literal["camera.offline"] = "camera.offline"
    camera: Name
    reason: DeviceReason = DeviceReason.UNKNOWN


class Tamper(_Event):
    """Tamper switch of a reader or the gateway enclosure changed."""

    type: Literal["tamper"] = "tamper"
    device: Name
    active: bool


class FacePathDisabled(_Event):
    """Face recognition is off; PIN/card keep working."""

    type: Literal["face_path.disabled"] = "face_path.disabled"
    reason: FacePathReason
    camera: Name | None = None


class FacePathEnabled(_Event):
    """Face recognition is back."""

    type: Literal["face_path.enabled"] = "face_path.enabled"
    reason: FacePathReason = FacePathReason.RECOVERED
    camera: Name | None = None


class ConsentWithdrawn(_Event):
    """A person withdrew face consent; their face data was erased."""

    type: Literal["consent.withdrawn"] = "consent.withdrawn"
    person: Pseudonym | None = Field(
        None,
        description="Null when the withdrawal followed a broker message (a signed command, "
        "another gate's fan-out), so the two cannot be linked by their timing.",
    )
    channel: WithdrawalChannel
    templates_erased: int = Field(ge=0, le=10_000)


class Lockout(_Event):
    """Too many failures: a credential kind is locked for a while at a door."""

    type: Literal["lockout"] = "lockout"
    door: Name
    scope: LockoutScope
    until: dt.datetime

    @field_serializer("until")
    def _until_rfc3339(self, v: dt.datetime) -> str:
        return v.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ComplianceAlert(_Event):
    """A rule of the face-recognition Measures needs attention."""

    type: Literal["compliance.alert"] = "compliance.alert"
    code: ComplianceCode
    value: int | None = Field(None, ge=0, description="Counter relevant to the code.")
    due: dt.date | None = Field(
        None,
        description="filing_required: the filing deadline (30 working days, China's official "
        "calendar); null when unknown (beyond the calendar's years: see the audit log).",
    )


class EventsDropped(_Event):
    """The outbox bound was hit and the oldest events were discarded."""

    type: Literal["events_dropped"] = "events_dropped"
    count: int = Field(ge=1)
    reason: DropReason
    oldest_ts: dt.datetime | None = None
    newest_ts: dt.datetime | None = None

    @field_serializer("oldest_ts", "newest_ts")
    def _opt_rfc3339(self, v: dt.datetime | None) -> str | None:
        if v is None:
            return None
        return v.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StorageMode(StrEnum):
    """How the state database is usable (``storage.degraded``)."""

    READ_ONLY = "read_only"  # opened read-only (e.g. the SD card was remounted read-only)


class StorageDegraded(_Event):
    """The gate runs DEGRADED on its storage: card and PIN decisions come from memory,
    changes and events cannot be stored (events are kept in memory)."""

    type: Literal["storage.degraded"] = "storage.degraded"
    mode: StorageMode


class Duress(_Event):
    """Duress PIN used: published on ``.../alarm/duress`` (the door still opens normally)."""

    type: Literal["duress"] = "duress"
    door: Name
    method: AccessMethod
    person: Pseudonym | None = None


Event = Annotated[
    AccessGranted
    | AccessDenied
    | DoorOpened
    | DoorClosed
    | DoorHeldOpen
    | DoorForced
    | TailgatingSuspected
    | LivenessFailedAfterGrant
    | DoorUnlocked
    | DoorLocked
    | ReaderOnline
    | ReaderOffline
    | CameraOnline
    | CameraOffline
    | Tamper
    | FacePathDisabled
    | FacePathEnabled
    | ConsentWithdrawn
    | Lockout
    | ComplianceAlert
    | EventsDropped
    | StorageDegraded
    | Duress,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_MODELS: tuple[type[_Event], ...] = (
    AccessGranted,
    AccessDenied,
    DoorOpened,
    DoorClosed,
    DoorHeldOpen,
    DoorForced,
    TailgatingSuspected,
    LivenessFailedAfterGrant,
    DoorUnlocked,
    DoorLocked,
    ReaderOnline,
    ReaderOffline,
    CameraOnline,
    CameraOffline,
    Tamper,
    FacePathDisabled,
    FacePathEnabled,
    ConsentWithdrawn,
    Lockout,
    ComplianceAlert,
    EventsDropped,
    StorageDegraded,
    Duress,
)
EVENT_TYPES: tuple[str, ...] = tuple(str(m.model_fields["type"].default) for m in EVENT_MODELS)
BaseEvent = _Event


def parse_event(payload: bytes | str) -> Event:
    """Validate a published payload back into its model (raises pydantic ValidationError)."""
    return EVENT_ADAPTER.validate_json(payload)


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of every event, as committed in docs/events.schema.json."""
    schema = EVENT_ADAPTER.json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "access-gateway MQTT event",
        "description": f"schema_version {SCHEMA_VERSION}; topic {{prefix}}/{{site}}/{{gate}}/"
        "events/{type} (duress: .../alarm/duress)",
        **schema,
    }


def schema_text() -> str:
    """The committed schema file's exact text."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(path: Path) -> None:
    """Regenerate the committed schema file."""
    path.write_text(schema_text(), encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover - regeneration entry point
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/events.schema.json")
    write_schema(target)
    sys.stdout.write(f"wrote {target}\n")
