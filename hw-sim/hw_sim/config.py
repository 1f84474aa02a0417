"""Simulator configuration (YAML), validated with pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hw_sim.cards import CardFormatError, get_format

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Point = tuple[float, float]

#: what walks up to a camera (see hw_sim.scenes)
VARIANTS: tuple[str, ...] = (
    "live",
    "photo",
    "bent",
    "replay",
    "tablet",
    "curved",
    "in_zone",
    "backlight",
    "lowlight",
)
DEMO_SCBK = "000102030405060708090a0b0c0d0e0f"  # test fixture, never a production key


class ConfigError(ValueError):
    """The simulator configuration is invalid (message names file and key)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraConfig(_Model):
    name: Name
    width: int = Field(640, ge=64, le=3840)
    height: int = Field(480, ge=64, le=2160)
    fps: float = Field(10.0, gt=0, le=60)
    jpeg_quality: int = Field(80, ge=10, le=100)
    basic_auth: tuple[str, str] | None = Field(
        None,
        description="[user, password] the stream demands (HTTP Basic), like an IP camera "
        "with a login; a simulator setting, so the password is plain text here.",
    )
    zones: list[list[Point]] = Field(
        default_factory=list,
        description="No-capture regions drawn in the scene (normalised polygons), e.g. a window.",
    )
    stereo_baseline_mm: float | None = Field(
        None,
        gt=10,
        le=1000,
        description="A USB stereo camera: each frame holds a second view, this far to the "
        "right, beside the first (the stream is twice 'width' wide).",
    )
    nir_baseline_mm: float | None = Field(
        None,
        gt=10,
        le=1000,
        description="An RGB+NIR camera module: each frame holds the near-infrared view (with "
        "its own IR illuminator), this far to the right, beside the colour one.",
    )
    focal_px: float = Field(560.0, gt=0, description="Focal length of the (ideal) lens, px.")

    @field_validator("zones")
    @classmethod
    def _zones(cls, v: list[list[Point]]) -> list[list[Point]]:
        for poly in v:
            if len(poly) < 3:
                raise ValueError("a zone polygon needs at least 3 points")
            if any(not (0 <= x <= 1 and 0 <= y <= 1) for x, y in poly):
                raise ValueError("zone points are normalised: 0 <= x, y <= 1")
        return v

    @model_validator(mode="after")
    def _one_pair(self) -> CameraConfig:
        if self.stereo_baseline_mm is not None and self.nir_baseline_mm is not None:
            raise ValueError("a camera is stereo or RGB+NIR, not both")
        return self


class ReaderConfig(_Model):
    name: Name
    address: int = Field(101, ge=0, le=126)
    port: int = Field(0, ge=0, le=65535, description="TCP port the PD listens on; 0 = free")
    scbk: str | None = Field(DEMO_SCBK, description="Secure Channel base key, 32 hex digits")
    card_format: str = "H10301"
    facility: int = Field(0, ge=0)
    pty: bool = False
    pty_link: str | None = None

    @field_validator("scbk")
    @classmethod
    def _scbk(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            raw = bytes.fromhex(v)
        except ValueError:
            raise ValueError("scbk must be hex") from None
        if len(raw) != 16:
            raise ValueError(f"scbk must be 16 bytes (32 hex digits), got {len(raw)}")
        return v

    @field_validator("card_format")
    @classmethod
    def _fmt(cls, v: str) -> str:
        try:
            return get_format(v).name
        except CardFormatError as exc:
            raise ValueError(str(exc)) from None


class DoorConfig(_Model):
    name: Name
    reader: Name
    camera: Name | None = None
    pass_s: float = Field(2.0, gt=0, description="how long a pushed door stays open")


class SimConfig(_Model):
    host: str = "127.0.0.1"
    api_port: int = Field(0, ge=0, le=65535, description="control API + camera streams; 0 = free")
    faces: Path | None = Field(None, description="LFW-layout face directory; default ../shared")
    cameras: list[CameraConfig] = Field(default_factory=list)
    readers: list[ReaderConfig] = Field(default_factory=list)
    doors: list[DoorConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _refs(self) -> SimConfig:
        for kind, items in (
            ("camera", self.cameras),
            ("reader", self.readers),
            ("door", self.doors),
        ):
            names = [i.name for i in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} names: {', '.join(dupes)}")
        readers = {r.name for r in self.readers}
        cameras = {c.name for c in self.cameras}
        for d in self.doors:
            if d.reader not in readers:
                raise ValueError(f"door {d.name}: unknown reader {d.reader!r}")
            if d.camera is not None and d.camera not in cameras:
                raise ValueError(f"door {d.name}: unknown camera {d.camera!r}")
        return self

    @classmethod
    def demo(cls, **overrides: Any) -> SimConfig:
        """The demo site: camera main-cam on main-gate (reader entry), side-door (reader side),
        the stereo camera stereo-cam on stereo-gate (reader stereo-entry), the RGB+NIR camera
        nir-cam on nir-gate (reader nir-entry)."""
        data: dict[str, Any] = {
            "cameras": [
                {
                    "name": "main-cam",
                    "width": 640,
                    "height": 480,
                    "fps": 10,
                    "zones": [[(0.72, 0.12), (0.95, 0.12), (0.95, 0.42), (0.72, 0.42)]],
                },
                {
                    "name": "stereo-cam",
                    "width": 640,
                    "height": 480,
                    "fps": 10,
                    "stereo_baseline_mm": 60.0,
                },
                {
                    "name": "nir-cam",
                    "width": 640,
                    "height": 480,
                    "fps": 10,
                    "nir_baseline_mm": 25.0,
                },
            ],
            "readers": [
                {"name": "entry", "address": 101, "facility": 10},
                {"name": "side", "address": 101, "facility": 10},
                {"name": "stereo-entry", "address": 101, "facility": 10},
                {"name": "nir-entry", "address": 101, "facility": 10},
            ],
            "doors": [
                {"name": "main-gate", "reader": "entry", "camera": "main-cam"},
                {"name": "side-door", "reader": "side"},
                {"name": "stereo-gate", "reader": "stereo-entry", "camera": "stereo-cam"},
                {"name": "nir-gate", "reader": "nir-entry", "camera": "nir-cam"},
            ],
        }
        data.update(overrides)
        if "doors" not in overrides:  # other cameras given: drop the doors of missing ones
            names = {c["name"] for c in data["cameras"]}
            data["doors"] = [d for d in data["doors"] if d.get("camera") in (None, *names)]
        return cls.model_validate(data)

    @classmethod
    def load(cls, path: Path) -> SimConfig:
        """Read a YAML file; errors name the file and the key path."""
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read simulator config: {exc}") from exc
        try:
            return cls.model_validate(raw or {})
        except ValidationError as exc:
            raise ConfigError(format_validation_error(path, exc)) from exc


def format_validation_error(path: Path | str, exc: ValidationError) -> str:
    """``file: key.path: message`` lines, one per problem."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{path}: {loc}: {err['msg']}")
    return "\n".join(lines)
