"""Configuration: one strict TOML file plus ``GATEWAY_*`` environment variables.

Every model forbids unknown keys and describes every field; cross-field rules (dangling
references, face-only doors, private-space cameras, missing impact assessment) are validators
that report the exact key path. Secrets are never inline: they are references to a systemd
credential (``$CREDENTIALS_DIRECTORY``) or a file.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.config.loading import (
    MAX_SECRET_BYTES,
    CheckedEnvSource,
    CheckedTomlSource,
    parsed_document,
    read_regular_file,
    read_toml,
)
from gateway.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/access-gateway/gateway.toml")
DEFAULT_STATE_DIR = Path("/var/lib/access-gateway")

_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Name = Annotated[str, Field(pattern=_NAME)]


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class Method(StrEnum):
    """A way through a door. Combinations need every factor; face+X are 1:1 checks."""

    FACE = "face"
    CARD = "card"
    PIN = "pin"
    CARD_PIN = "card+pin"
    FACE_CARD = "face+card"
    FACE_PIN = "face+pin"

    @property
    def needs_face(self) -> bool:
        """True when the method cannot work while the face path is down."""
        return "face" in self.value

    @property
    def needs_reader(self) -> bool:
        """True when the method needs a card reader or keypad."""
        return self is not Method.FACE


class SecretRef(Strict):
    """Where a secret lives: a systemd credential name or a file path (never inline)."""

    credential: str | None = Field(
        None,
        description="Name of a systemd credential (LoadCredential=) read from "
        "$CREDENTIALS_DIRECTORY/<name>.",
        pattern=r"^[A-Za-z0-9_.-]+$",
    )
    file: Path | None = Field(None, description="Path of a file holding the secret (mode 0600).")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.credential is None) == (self.file is None):
            raise ValueError("give exactly one of 'credential' or 'file'")
        return self

    def path(self) -> Path:
        """Resolve the file that holds the secret."""
        if self.file is not None:
            return self.file
        base = os.environ.get("CREDENTIALS_DIRECTORY")
        if not base:
            raise ConfigError(
                [
                    (
                        "credential",
                        str(self.credential),
                        (
                            "CREDENTIALS_DIRECTORY is not set (not running under systemd "
                            "with LoadCredential=); use 'file' instead"
                        ),
                    )
                ]
            )
        return Path(base) / str(self.credential)

    def read_bytes(self) -> bytes:
        """Read the secret; raises ConfigError naming the source when unreadable."""
        p = self.path()
        try:  # regular files only, bounded: a FIFO or /dev/zero must not hang the start
            return secret_bytes(read_regular_file(p, MAX_SECRET_BYTES, missing="no such file"))
        except ConfigError as exc:
            raise ConfigError([(str(p), "", f"cannot read secret: {exc.problems[0][2]}")]) from exc


def secret_bytes(data: bytes) -> bytes:
    """A text secret (password, hex key) loses its surrounding whitespace; binary keys are
    returned untouched, since a random key may well end in a byte that looks like space."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return data
    stripped = text.strip()
    if stripped and stripped.isprintable():
        return stripped.encode("ascii")
    return data


class SiteConfig(Strict):
    """Who runs this gate and where it is."""

    id: Name = Field(description="Site (compound) identifier used in MQTT topics.")
    gate: Name = Field(description="This gate's identifier, unique within the site.")
    name: str = Field("", description="Human-readable site name for reports.")
    timezone: str = Field("Asia/Shanghai", description="IANA timezone for schedules.")
    operator: str = Field(
        "", description="Personal-information processor (the compound's management company)."
    )
    contact: str = Field("", description="How residents contact the processor.")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {v!r}") from exc
        return v


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


class LivenessPolicy(StrEnum):
    """What a failed passive liveness check does at a door."""

    REQUIRED = "required"
    ADVISORY = "advisory"
    OFF = "off"


class DoorConfig(Strict):
    """One door (or gate leaf) with its lock, inputs and allowed methods."""

    reader: str | None = Field(None, description="Reader (card/keypad) at this door.")
    camera: str | None = Field(None, description="Camera watching this door's approach.")
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


class Zone(Strict):
    """A no-capture polygon in normalised image coordinates (0..1)."""

    name: str = Field(description="What the zone hides (e.g. 'neighbour window').")
    polygon: list[tuple[float, float]] = Field(
        min_length=3, description="Vertices (x, y), each 0..1, x to the right, y down."
    )

    @field_validator("polygon")
    @classmethod
    def _in_unit_square(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for x, y in v:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"vertex ({x}, {y}) is outside 0..1")
        return v


class Space(StrEnum):
    """What kind of place a camera sees (Art. 13)."""

    PUBLIC = "public"
    SEMI_PRIVATE = "semi_private"
    PRIVATE = "private"


STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https"})
PRIVATE_SPACE_RULE = (
    "no face processing in private spaces (Art. 13): rooms, bathrooms, changing rooms and "
    "toilets may not have a face camera; no role can override this"
)


class CameraConfig(Strict):
    """A camera: its source, what it sees and what must never be captured."""

    source: str = Field(
        description="V4L2 device (/dev/video0), rtsp:// or http(s):// MJPEG URL, or a file path. "
        "Give a stream's credentials with 'username' and 'password', not inside the URL."
    )
    username: str | None = Field(
        None,
        min_length=1,
        description="User name for an rtsp:// or http(s):// stream that needs one.",
    )
    password: SecretRef | None = Field(
        None,
        description="Password reference for the stream (a file or systemd credential, never "
        "inline); joined into the URL only when the stream is opened.",
    )
    door: str = Field(description="Door this camera serves.")
    width: int = Field(640, ge=160, le=3840, description="Requested frame width.")
    height: int = Field(480, ge=120, le=2160, description="Requested frame height.")
    fps: float = Field(15.0, gt=0, le=60, description="Frames per second to process at most.")
    space: Space = Field(
        description="public, semi_private, or private (rooms, bathrooms, changing rooms, "
        "toilets): private cameras are refused."
    )
    signage_installed: bool = Field(
        False, description="A visible sign tells people face recognition is in use (Art. 13)."
    )
    signage_recorded: str = Field(
        "", description="Where/when the signage was installed (for the compliance record)."
    )
    zones: list[Zone] = Field(
        default_factory=list, description="No-capture polygons blanked before any model runs."
    )

    @field_validator("space")
    @classmethod
    def _not_private(cls, v: Space) -> Space:
        if v is Space.PRIVATE:
            raise ValueError(PRIVATE_SPACE_RULE)
        return v

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if self.username is None and self.password is None:
            return self
        parts = urlsplit(self.source)
        if parts.scheme not in STREAM_SCHEMES:
            raise ValueError("'username'/'password' apply only to rtsp:// or http(s):// sources")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "credentials are given both inside 'source' and as 'username'/'password': "
                "remove them from the URL"
            )
        if self.password is not None and not self.username:
            raise ValueError("'password' needs a 'username'")
        return self

    @property
    def inline_password(self) -> bool:
        """True when the source URL itself carries a password (works, but discouraged)."""
        try:
            return urlsplit(self.source).password is not None
        except ValueError:
            return False

    def stream_url(self) -> str:
        """The URL to open, with the credentials joined in (the secret is read now: a
        rotated password file takes effect at the next reconnect; a systemd credential is a
        copy made at service start). Never log it: see ``redact_url``."""
        if self.username is None:
            return self.source
        parts = urlsplit(self.source)
        user = quote(self.username, safe="")
        if self.password is not None:
            raw = self.password.read_bytes()
            try:
                secret = raw.decode("utf-8")
            except UnicodeDecodeError:
                where = str(self.password.file or self.password.credential)
                raise ConfigError(
                    [("password", where, "the camera password is not UTF-8 text")]
                ) from None
            user += ":" + quote(secret, safe="")
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


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


class FaceConfig(Strict):
    """The on-device face pipeline and its decision tuning."""

    enabled: bool = Field(True, description="Run face processing on cameras that allow it.")
    model_dir: Path = Field(
        DEFAULT_STATE_DIR / "models", description="Where converted models are installed."
    )
    backend: Literal["onnxruntime", "opencv"] = Field("onnxruntime", description="Inference.")
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="onnxruntime execution providers in preference order.",
    )
    threads: int = Field(2, ge=1, le=16, description="Intra-op threads for inference.")
    detector_input: tuple[int, int] = Field(
        (320, 320), description="Detector input (width, height), multiples of 32."
    )
    score_threshold: float = Field(0.7, gt=0, lt=1, description="Detection score threshold.")
    letterbox: bool = Field(
        True, description="Keep the aspect ratio (pad) instead of stretching to the detector input."
    )
    nms_threshold: float = Field(0.3, gt=0, lt=1, description="Detector NMS IoU.")
    top_k: int = Field(50, ge=1, le=500, description="Most faces per frame.")
    max_yaw: float = Field(0.35, gt=0, le=1, description="Nose offset / eye distance limit.")
    max_roll_deg: float = Field(25.0, gt=0, le=90, description="Head roll limit (degrees).")
    pitch_range: tuple[float, float] = Field(
        (0.2, 0.8), description="Nose height between the eye line and the mouth line."
    )
    min_brightness: float = Field(40.0, ge=0, le=255, description="Darkest mean grey accepted.")
    max_brightness: float = Field(220.0, ge=0, le=255, description="Brightest mean grey accepted.")
    liveness_threshold: float = Field(
        0.5, gt=0, lt=1, description="Live probability needed from the anti-spoof models."
    )
    detector_backend: Literal["onnxruntime", "opencv"] | None = Field(
        None, description="Override of 'backend' for the detector."
    )
    embedder_backend: Literal["onnxruntime", "opencv"] | None = Field(
        None, description="Override of 'backend' for the embedder."
    )
    liveness_backend: Literal["onnxruntime", "opencv"] | None = Field(
        None, description="Override of 'backend' for the anti-spoof models."
    )
    warmup: bool = Field(True, description="Run each model once at load.")
    consistency_frames: int = Field(
        5, ge=2, le=15, description="Frames over which landmark motion is judged."
    )
    motion_check: Literal["off", "veto"] = Field(
        "off",
        description="Landmark-motion consistency: 'veto' denies faces whose landmarks move "
        "rigidly. Off by default: on YuNet's 5 landmarks it does not reliably separate a "
        "live head from a photo (README, Liveness); it never replaces the anti-spoof models.",
    )
    match_threshold: float = Field(
        0.51,
        gt=0,
        lt=1,
        description="Cosine similarity to accept a 1:N match (FPIR 0.1% with a 218-person "
        "gallery in benchmarks/results/REPORT.md; re-calibrate with 'gateway calibrate').",
    )
    verify_threshold: float = Field(
        0.42,
        gt=0,
        lt=1,
        description="Cosine similarity to confirm a claimed identity 1:1 (face+card, "
        "face+pin): FMR 1e-4 on LFW DevTrain in benchmarks/results/REPORT.md.",
    )
    match_margin: float = Field(
        0.09, ge=0, lt=1, description="Required lead over the best other person (1:N)."
    )
    flip_fusion: bool = Field(False, description="Average embeddings of the face and its mirror.")
    min_interocular_px: float = Field(
        28.0, gt=0, description="Smallest eye distance accepted by the quality gate."
    )
    tracked_size_ratio: float = Field(
        0.85,
        ge=0.5,
        le=1.0,
        description="Hysteresis of the size check: a face the gate accepted in the previous "
        "frame (same place, within 0.5 s) keeps passing down to this share of "
        "min_interocular_px, so a resident walking up at the size limit is not turned away "
        "frame by frame; 1.0 turns it off. Enrolment always uses the strict limit.",
    )
    min_sharpness: float = Field(
        20.0, ge=0, description="Variance of the Laplacian below which a face is blurred."
    )
    fusion_k: int = Field(2, ge=1, le=10, description="Grant when k of the last n frames match.")
    fusion_n: int = Field(3, ge=1, le=20, description="Window of frames for fusion.")
    max_decision_age_ms: int = Field(
        500, ge=50, le=5000, description="A recognition older than this never opens a door."
    )
    cooldown_s: float = Field(
        10.0, ge=0, le=600, description="One decision per person per approach within this."
    )
    approach_gap_s: float = Field(
        2.0, gt=0, le=60, description="No face for this long ends an approach."
    )
    failed_attempts_before_fallback: int = Field(
        3, ge=1, le=10, description="Failed face attempts after which PIN/card is offered."
    )
    enrol_images: int = Field(3, ge=1, le=20, description="Images asked for at enrolment.")

    @field_validator("detector_input")
    @classmethod
    def _multiple_of_32(cls, v: tuple[int, int]) -> tuple[int, int]:
        if any(d % 32 or d <= 0 for d in v):
            raise ValueError("detector input width and height must be positive multiples of 32")
        return v

    @model_validator(mode="after")
    def _k_le_n(self) -> Self:
        if self.fusion_k > self.fusion_n:
            raise ValueError("fusion_k cannot exceed fusion_n")
        return self


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


class StorageConfig(Strict):
    """Where state lives."""

    state_dir: Path = Field(DEFAULT_STATE_DIR, description="State directory (0700).")
    database: Path | None = Field(
        None, description="SQLite database; default <state_dir>/state.db."
    )

    @property
    def database_path(self) -> Path:
        """The database file."""
        return self.database or self.state_dir / "state.db"


class RetentionConfig(Strict):
    """How long each kind of record is kept (Art. 8: no longer than needed)."""

    access_log_days: int = Field(30, ge=1, le=3650, description="Local access log.")
    inactive_template_days: int = Field(
        180, ge=7, le=3650, description="Erase face data of people not seen for this long."
    )
    expired_person_days: int = Field(
        0, ge=0, le=3650, description="Erase face data this long after a person's validity ends."
    )
    processing_records_years: int = Field(
        3, ge=3, le=30, description="Consent receipts and processing records (>= 3 years)."
    )
    purge_interval_s: float = Field(3600, ge=60, description="How often purge jobs run.")
    visitor_pin_grace_days: int = Field(
        0, ge=0, le=365, description="Purge visitor PINs this long after they expire."
    )
    audit_days: int = Field(
        1100, ge=1096, le=11000, description="Audit rows older than this are pruned (>= 3 y)."
    )
    audit_max_rows: int = Field(
        200_000,
        ge=1000,
        description="Beyond this, the oldest audit rows are pruned (records carried on).",
    )
    people_inactive_days: int = Field(
        400, ge=30, le=3650, description="Clear last-seen of people not seen for this long."
    )


class ImpactAssessment(Strict):
    """The personal-information protection impact assessment on record (Art. 9)."""

    reference: str = Field(min_length=1, description="Document reference of the assessment.")
    date: dt.date = Field(description="Date the assessment was completed.")


class PrivacyConfig(Strict):
    """Consent notice, keys and the compliance thresholds."""

    notice_file: Path | None = Field(
        None, description="The face-processing notice shown before consent (Art. 5 items)."
    )
    notice_version: str = Field("1", description="Version of the notice text.")
    impact_assessment: ImpactAssessment | None = Field(
        None, description="Required before any face processing is enabled (Art. 9)."
    )
    device_key: SecretRef | None = Field(
        None, description="Device key wrapping template keys and keying card hashes."
    )
    site_key: SecretRef | None = Field(
        None, description="Site key binding templates and keying event pseudonyms."
    )
    pseudonym_epoch_s: int = Field(
        86400, ge=60, description="Rotation period of person pseudonyms in events."
    )
    warn_people: int = Field(
        80_000, ge=1, description="Warn when the compound stores this many people."
    )
    filing_threshold: int = Field(
        100_000, ge=1, description="Filing with the authority due within 30 working days (Art. 15)."
    )
    holidays: list[dt.date] = Field(
        default_factory=list, description="Non-working days for the filing deadline."
    )
    renotice_grace_days: int = Field(
        30, ge=0, le=365, description="Days face matching continues after a notice change."
    )
    enrol_min_good: int = Field(
        1, ge=1, le=20, description="Good images needed for an enrolment to succeed."
    )
    enrol_max_templates: int = Field(
        10, ge=1, le=50, description="Templates kept per person at most."
    )
    gate_enrol_frames: int = Field(
        3, ge=1, le=20, description="Good frames captured for an enrolment at the gate."
    )
    gate_enrol_timeout_s: float = Field(
        30.0, gt=0, le=300, description="Time allowed for an enrolment at the gate."
    )


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


class RuntimeConfig(Strict):
    """Supervisor and logging."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Level.")
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    restart_budget: int = Field(
        5, ge=1, le=100, description="Restarts a service may use per window."
    )
    restart_window_s: float = Field(60.0, gt=0, description="Window of the restart budget.")
    shutdown_timeout_s: float = Field(4.0, gt=0, le=30, description="Graceful shutdown limit.")


class _TomlPath:
    current: ContextVar[Path | None] = ContextVar("gateway_config_path", default=None)


class GatewayConfig(BaseSettings):
    """The whole gateway configuration."""

    model_config = SettingsConfigDict(
        extra="forbid",
        env_prefix="GATEWAY_",
        env_nested_delimiter="__",
        validate_default=True,
    )

    site: SiteConfig = Field(description="This site and gate.")
    readers: dict[Name, ReaderConfig] = Field(default_factory=dict, description="Readers.")
    cameras: dict[Name, CameraConfig] = Field(default_factory=dict, description="Cameras.")
    access_groups: dict[Name, AccessGroupConfig] = Field(
        default_factory=lambda: {"residents": AccessGroupConfig()},
        description="Access groups with schedules.",
    )
    doors: dict[Name, DoorConfig] = Field(min_length=1, description="Doors.")
    face: FaceConfig = Field(default_factory=FaceConfig, description="Face pipeline.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Storage.")
    retention: RetentionConfig = Field(default_factory=RetentionConfig, description="Retention.")
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig, description="Privacy.")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="Runtime.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment over the TOML file over defaults."""
        path = _TomlPath.current.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, CheckedEnvSource(settings_cls)]
        if path is not None:
            sources.append(CheckedTomlSource(settings_cls, toml_file=path))
        return tuple(sources)

    @field_validator("doors", mode="wrap")
    @classmethod
    def _door_references(
        cls, raw: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> dict[str, DoorConfig]:
        readers = info.data.get("readers")
        cameras = info.data.get("cameras")
        try:
            doors: dict[str, DoorConfig] = handler(raw)
        except ValidationError as exc:
            # Report dangling references too, even though some door is malformed.
            extra = list(_raw_reference_problems(raw, readers, cameras))
            if not extra:
                raise
            _raise_if(iter([*_as_cross(exc), *extra]))
            raise
        _raise_if(_door_problems(doors, readers, cameras, info.data.get("access_groups")))
        return doors

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        _raise_if(_global_problems(self))
        return self

    def face_doors(self) -> list[str]:
        """Doors where some method uses the face."""
        return [n for n, d in self.doors.items() if d.uses_face]


CrossProblem = tuple[tuple[str | int, ...], Any, str]


def _raise_if(problems: Iterator[CrossProblem]) -> None:
    errors = list(problems)
    if errors:
        raise ValidationError.from_exception_data(
            "GatewayConfig",
            [
                InitErrorDetails(
                    type=PydanticCustomError("cross_field", "{rule}", {"rule": msg}),
                    loc=loc,
                    input=value,
                )
                for loc, value, msg in errors
            ],
        )


def _door_problems(
    doors: dict[str, DoorConfig],
    readers: dict[str, ReaderConfig] | None,
    cameras: dict[str, CameraConfig] | None,
    groups: dict[str, AccessGroupConfig] | None,
) -> Iterator[CrossProblem]:
    """Door rules that refer to other sections (paths relative to ``doors``)."""
    gpio_lines: dict[tuple[str, int], str] = {}
    for name, door in doors.items():
        base: tuple[str | int, ...] = (name,)
        for key, b in (
            ("relay", door.relay),
            ("contact", door.contact),
            ("exit_button", door.exit_button),
            ("tamper", door.tamper),
        ):
            if b.kind != "gpio" or b.line is None:
                continue
            where = f"doors.{name}.{key}"
            first = gpio_lines.setdefault((b.chip, b.line), where)
            if first != where:
                yield (
                    (*base, key, "line"),
                    b.line,
                    f"GPIO line {b.chip}:{b.line} is already used by {first}",
                )
        if readers is not None and door.reader is not None and door.reader not in readers:
            yield (*base, "reader"), door.reader, f"reader {door.reader!r} is not configured"
        if cameras is not None and door.camera is not None and door.camera not in cameras:
            yield (*base, "camera"), door.camera, f"camera {door.camera!r} is not configured"
        needs_reader = [m.value for m in door.methods if m.needs_reader]
        if needs_reader and door.reader is None:
            yield (*base, "reader"), None, f"methods {needs_reader} need a reader at this door"
        if door.uses_face and door.camera is None:
            yield (*base, "camera"), None, "face methods need a camera at this door"
        for key, binding in (
            ("relay", door.relay),
            ("contact", door.contact),
            ("exit_button", door.exit_button),
            ("tamper", door.tamper),
        ):
            if binding.kind == "osdp" and readers is not None:
                ref = binding.reader or door.reader
                if ref is None or ref not in readers:
                    yield (
                        (*base, key, "reader"),
                        ref,
                        "an osdp binding needs a configured reader (or the door's reader)",
                    )
                elif readers[ref].protocol != "osdp":
                    yield (*base, key, "reader"), ref, f"reader {ref!r} is not an OSDP reader"
            if binding.kind == "gpio" and binding.line is None:
                yield (*base, key, "line"), None, "a gpio binding needs a line number"
        if groups is not None:
            for group in door.access_groups:
                if group not in groups:
                    yield (
                        (*base, "access_groups"),
                        group,
                        f"access group {group!r} is not defined",
                    )
        pair = door.anti_passback_pair
        if pair is not None and pair not in doors:
            yield (*base, "anti_passback_pair"), pair, f"door {pair!r} is not configured"


def _as_cross(exc: ValidationError) -> Iterator[CrossProblem]:
    for err in exc.errors(include_url=False):
        yield tuple(err["loc"]), err.get("input"), _clean_msg(err["type"], err["msg"])


def _raw_reference_problems(
    raw: Any, readers: dict[str, ReaderConfig] | None, cameras: dict[str, CameraConfig] | None
) -> Iterator[CrossProblem]:
    """Reference checks on unvalidated door tables (used when a door is malformed)."""
    if not isinstance(raw, dict):
        return
    for name, door in raw.items():
        if not isinstance(door, dict):
            continue
        ref = door.get("reader")
        if readers is not None and isinstance(ref, str) and ref not in readers:
            yield (name, "reader"), ref, f"reader {ref!r} is not configured"
        cam = door.get("camera")
        if cameras is not None and isinstance(cam, str) and cam not in cameras:
            yield (name, "camera"), cam, f"camera {cam!r} is not configured"


def _global_problems(cfg: GatewayConfig) -> Iterator[CrossProblem]:
    """Rules across sections, checked once every section is valid."""
    for name, cam in cfg.cameras.items():
        if cam.door not in cfg.doors:
            yield ("cameras", name, "door"), cam.door, f"door {cam.door!r} is not configured"
    face_cameras = [n for n, d in cfg.doors.items() if d.uses_face and d.camera in cfg.cameras]
    if cfg.face.enabled and face_cameras:
        for door_name in face_cameras:
            cam_name = cfg.doors[door_name].camera
            assert cam_name is not None  # noqa: S101 - guarded by the list above
            if not cfg.cameras[cam_name].signage_installed:
                yield (
                    ("cameras", cam_name, "signage_installed"),
                    False,
                    "face processing needs visible signage at the camera (Art. 13)",
                )
        if cfg.privacy.impact_assessment is None:
            yield (
                ("privacy", "impact_assessment"),
                None,
                (
                    "an impact assessment (reference and date) must be on record before "
                    "face mode is enabled (Art. 9)"
                ),
            )
        if cfg.privacy.notice_file is None:
            yield (
                ("privacy", "notice_file"),
                None,
                "face processing needs the consent notice text shown to residents (Art. 5)",
            )
        if cfg.privacy.device_key is None:
            yield (
                ("privacy", "device_key"),
                None,
                "face templates must be encrypted at rest: configure a device key",
            )
    if cfg.privacy.site_key is None:
        yield (
            ("privacy", "site_key"),
            None,
            "a site key is needed to pseudonymize events and bind templates to this site",
        )
    if cfg.privacy.warn_people >= cfg.privacy.filing_threshold:
        yield (
            ("privacy", "warn_people"),
            cfg.privacy.warn_people,
            "the warning must come before the filing threshold",
        )


Problem = tuple[str, str, str]


def _format_loc(loc: tuple[str | int, ...]) -> str:
    parts = (
        str(p) if str(p).isprintable() and len(str(p)) <= 64 else repr(str(p)[:64]) for p in loc
    )
    return ".".join(parts) or "(root)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _clean_msg(kind: str, msg: str) -> str:
    if kind == "extra_forbidden":
        return "unknown key"
    return msg.removeprefix("Value error, ")


def problems_from_validation(exc: ValidationError) -> list[Problem]:
    """Turn pydantic errors into (key path, value, message) rows."""
    rows: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if p not in {"function-after", "function-wrap"})
        msg = _clean_msg(err["type"], err["msg"])
        rows.append((_format_loc(loc), _short(err.get("input")), msg))
    return rows


def load_config(path: Path | str | None = None, *, env: bool = True) -> GatewayConfig:
    """Load and validate the configuration; raise ConfigError with every problem."""
    p = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    doc_token = parsed_document().set(read_toml(p))  # ConfigError naming file and line
    token = _TomlPath.current.set(p)
    saved: dict[str, str] = {}
    try:
        if not env:
            saved = {k: v for k, v in os.environ.items() if k.startswith("GATEWAY_")}
            for k in saved:
                del os.environ[k]
        return GatewayConfig()
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc)) from exc
    finally:
        os.environ.update(saved)
        _TomlPath.current.reset(token)
        parsed_document().reset(doc_token)


def format_problems(problems: list[Problem]) -> str:
    """One line per problem: ``key.path: message (value: ...)``."""
    return "\n".join(
        f"{path}: {msg}" + (f" (value: {value})" if value else "") for path, value, msg in problems
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the configuration."""
    return GatewayConfig.model_json_schema()
