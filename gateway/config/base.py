"""The configuration base: the strict model every section derives from, names, secrets.

Every model forbids unknown keys and describes every field. Secrets are never inline: they
are references to a systemd credential (``$CREDENTIALS_DIRECTORY``) or a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.config.loading import MAX_SECRET_BYTES, read_regular_file
from gateway.errors import ConfigError

DEFAULT_STATE_DIR = Path("/var/lib/access-gateway")

_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Name = Annotated[str, Field(pattern=_NAME)]


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


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
