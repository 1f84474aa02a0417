"""Configuration of cameras: the stream, what the camera sees, what is never captured."""

from __future__ import annotations

from enum import StrEnum
from typing import Self
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator

from gateway.config.base import SecretRef, Strict
from gateway.errors import ConfigError


class Zone(Strict):
    """A no-capture polygon in normalised image coordinates (0..1), edges never crossing.

    The crossing check names the camera too: it is a cross-field rule of the root."""

    name: str = Field(description="What the zone hides (e.g. 'neighbour window').")
    polygon: list[tuple[float, float]] = Field(
        min_length=3,
        description="Vertices (x, y), each 0..1, x to the right, y down, in order around the "
        "area (the edges must not cross).",
    )

    @field_validator("polygon")
    @classmethod
    def _in_unit_square(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for x, y in v:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"vertex ({x}, {y}) is outside 0..1")
        return v


def _orient(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> int:
    """The turn a -> b -> c: 1 left, -1 right, 0 straight (within rounding)."""
    v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return 0 if abs(v) < 1e-12 else (1 if v > 0 else -1)


def _on(a: tuple[float, float], b: tuple[float, float], p: tuple[float, float]) -> bool:
    """Whether ``p``, on the line through a and b, lies within the segment a-b."""
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _cross(
    a: tuple[float, float], b: tuple[float, float], c: tuple[float, float], d: tuple[float, float]
) -> bool:
    """Whether segments a-b and c-d meet (crossing, touching or overlapping)."""
    o1, o2, o3, o4 = _orient(a, b, c), _orient(a, b, d), _orient(c, d, a), _orient(c, d, b)
    if o1 != o2 and o3 != o4 and 0 not in (o1, o2, o3, o4):
        return True
    return (
        (o1 == 0 and _on(a, b, c))
        or (o2 == 0 and _on(a, b, d))
        or (o3 == 0 and _on(c, d, a))
        or (o4 == 0 and _on(c, d, b))
    )


def self_intersection(polygon: list[tuple[float, float]]) -> tuple[int, int] | None:
    """The first two edges (numbered from 1: edge k joins corners k and k+1, the last
    one closes the polygon) that cross, touch or fold back on each other; None for a
    simple polygon. A corner repeated in a row is ignored."""
    pts = [p for i, p in enumerate(polygon) if p != polygon[i - 1]] or list(polygon[:1])
    n = len(pts)
    edges = [(pts[i], pts[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            (a, b), (c, d) = edges[i], edges[j]
            if j == i + 1 or (i == 0 and j == n - 1):  # neighbours share a corner
                shared, x, y = (b, a, d) if j == i + 1 else (a, b, c)
                folded = _orient(x, shared, y) == 0 and (
                    (x[0] - shared[0]) * (y[0] - shared[0])
                    + (x[1] - shared[1]) * (y[1] - shared[1])
                    > 0
                )
                if folded:
                    return i + 1, j + 1
            elif _cross(a, b, c, d):
                return i + 1, j + 1
    return None


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
