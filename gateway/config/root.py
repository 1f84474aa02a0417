"""The whole configuration, its cross-field rules, and loading it.

Cross-field rules (dangling references, face-only doors, private-space cameras, missing
impact assessment) are validators that report the exact key path. Loading reads the TOML
file and ``GATEWAY_*`` environment variables and reports every problem at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Self

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.config.base import Name
from gateway.config.cameras import CameraConfig, self_intersection
from gateway.config.doors import AccessGroupConfig, DoorConfig
from gateway.config.face import FaceConfig
from gateway.config.keys import KeysConfig
from gateway.config.loading import CheckedEnvSource, CheckedTomlSource, parsed_document, read_toml
from gateway.config.mqtt import MqttConfig
from gateway.config.pairs import pair_problems
from gateway.config.privacy import PrivacyConfig, RetentionConfig
from gateway.config.readers import ReaderConfig
from gateway.config.roster import RosterConfig
from gateway.config.site import RuntimeConfig, SiteConfig, StorageConfig
from gateway.config.web import WebConfig
from gateway.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/access-gateway/gateway.toml")


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
    keys: KeysConfig = Field(default_factory=KeysConfig, description="Key provider.")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="Runtime.")
    web: WebConfig = Field(default_factory=WebConfig, description="Web console.")
    roster: RosterConfig = Field(
        default_factory=RosterConfig, description="The compound roster (office or gate)."
    )

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
        for i, zone in enumerate(cam.zones):
            crossing = self_intersection(zone.polygon)
            if crossing is not None:
                yield (
                    ("cameras", name, "zones", i, "polygon"),
                    zone.polygon,
                    (
                        f"zone {zone.name!r} of camera {name!r} crosses itself (edges "
                        f"{crossing[0]} and {crossing[1]} meet): place its corners in order "
                        "around the area"
                    ),
                )
    for name, door in cfg.doors.items():
        if door.pair is not None:
            yield from pair_problems(name, door.pair, door.camera, cfg.cameras)
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
        if cfg.privacy.device_key is None and cfg.keys.provider == "file":
            yield (
                ("privacy", "device_key"),
                None,
                (
                    "face templates must be encrypted at rest: configure a device key "
                    "(or keys.provider = 'tpm')"
                ),
            )
    if cfg.keys.provider == "tpm" and cfg.privacy.device_key is not None:
        yield (
            ("privacy", "device_key"),
            "set",
            (
                "with keys.provider = 'tpm' the device key is sealed to the TPM: remove this "
                "clear copy from the configuration (and from the disk)"
            ),
        )
    if cfg.privacy.site_key is None:
        yield (
            ("privacy", "site_key"),
            None,
            "a site key is needed to pseudonymize events and bind templates to this site",
        )
    if cfg.roster.role == "office" and cfg.privacy.template_protection != "orthogonal":
        yield (
            ("privacy", "template_protection"),
            cfg.privacy.template_protection,
            (
                "the roster office sends each gate untransformed templates (sealed for that "
                "gate, which applies its own protection): it keeps them in the invertible "
                "'orthogonal' mode under a key of its own"
            ),
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
