"""Configuration of this site and gate: identity, storage and the supervisor."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from gateway.config.base import DEFAULT_STATE_DIR, Name, Strict


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


class RuntimeConfig(Strict):
    """Supervisor and logging."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Level.")
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    restart_budget: int = Field(
        5, ge=1, le=100, description="Restarts a service may use per window."
    )
    restart_window_s: float = Field(60.0, gt=0, description="Window of the restart budget.")
    shutdown_timeout_s: float = Field(4.0, gt=0, le=30, description="Graceful shutdown limit.")
