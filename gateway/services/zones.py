"""Camera zones (the installer's): a camera's no-capture polygons, the kind of space it
sees and its signage, read from and written to the configuration file. A change is
validated exactly as ``gateway config validate`` does (the whole file, every rule), then
written atomically with the previous file kept as ``<file>.bak``; comments and layout of
the file are kept (tomlkit). The preview is the one image the console ever sends: zones
blanked and outlined, every other face blurred (:func:`gateway.privacy.zones.render_preview`)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils
import tomlkit

from gateway.config.cameras import Space
from gateway.config.root import GatewayConfig, format_problems, load_config
from gateway.errors import ConfigError, GatewayError
from gateway.privacy import audit
from gateway.privacy import zones as privacy_zones

log = logging.getLogger(__name__)
SPACES = tuple(s.value for s in Space)


class ZonesRefusedError(GatewayError):
    """The changed configuration does not validate; ``problems`` as ``config validate``."""

    def __init__(self, problems: list[str]) -> None:
        """Keep every problem line for the installer."""
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class CameraZones:
    """What the zones page shows and changes of one camera."""

    camera: str
    space: str
    signage_installed: bool
    signage_recorded: str = ""
    zones: list[dict[str, Any]] = field(default_factory=list)
    """``{"name": str, "polygon": [[x, y], ...]}`` in 0..1 image coordinates."""


def config_problems(path: Path) -> list[str]:
    """The configuration file's problems (empty: valid), as ``gateway config validate``."""
    try:
        load_config(path)
    except ConfigError as exc:
        return format_problems(exc.problems).splitlines()
    return []


def cameras(path: Path) -> list[CameraZones]:
    """Every configured camera's zones, space and signage (the file must be valid)."""
    return [_of(name, cfg) for name, cfg in _load(path).cameras.items()]


def camera(path: Path, name: str) -> CameraZones:
    """One camera's zones (GatewayError when it is not configured)."""
    cfg = _load(path).cameras.get(name)
    if cfg is None:
        raise GatewayError(f"camera {name!r} is not in the configuration")
    return _of(name, cfg)


def _load(path: Path) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise ZonesRefusedError(format_problems(exc.problems).splitlines()) from exc


def _of(name: str, cam: Any) -> CameraZones:
    return CameraZones(
        name,
        cam.space.value,
        cam.signage_installed,
        cam.signage_recorded,
        [{"name": z.name, "polygon": [list(p) for p in z.polygon]} for z in cam.zones],
    )


def save(path: Path, change: CameraZones) -> None:
    """Write ``change`` into the camera's table when the whole file then validates
    (:class:`ZonesRefusedError` with the problems otherwise; the file is left as it was)."""
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    table = doc.get("cameras", {}).get(change.camera)
    if table is None:
        raise GatewayError(f"camera {change.camera!r} is not in the configuration")
    table["space"] = change.space
    table["signage_installed"] = change.signage_installed
    table["signage_recorded"] = change.signage_recorded
    zones = tomlkit.aot()
    for z in change.zones:
        t = tomlkit.table()
        t["name"] = z["name"]
        t["polygon"] = z["polygon"]
        zones.append(t)
    table["zones"] = zones
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(tomlkit.dumps(doc))
            f.flush()
            os.fsync(f.fileno())
        shutil.copymode(path, tmp)
        problems = config_problems(tmp)
        if problems:
            raise ZonesRefusedError([p.replace(str(tmp), str(path)) for p in problems])
        shutil.copy2(path, path.with_name(path.name + ".bak"))
        tmp.replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def record_change(db: sqlite_utils.Database, change: CameraZones, *, actor: str) -> None:
    """Audit a saved zones change (counts and tags, no coordinates needed to audit)."""
    audit.append(
        db,
        actor,
        "config.zones",
        change.camera,
        {"zones": len(change.zones), "space": change.space, "signage": change.signage_installed},
    )


def preview_png(path: Path, name: str, detector: Any) -> bytes:
    """A PNG of the camera's current frame, zones blanked, other faces blurred (the whole
    frame when ``detector`` is None: fail private)."""
    import cv2

    cfg = _load(path).cameras.get(name)
    if cfg is None:
        raise GatewayError(f"camera {name!r} is not in the configuration")
    frame = privacy_zones.grab_frame(cfg.stream_url())
    out, _ = privacy_zones.render_preview(frame, [z.polygon for z in cfg.zones], detector)
    frame.fill(0)
    ok, png = cv2.imencode(".png", out)  # privacy-ok: the admin's zones preview, zones blanked
    out.fill(0)
    if not ok:
        raise GatewayError(f"camera {name!r}: the preview could not be encoded")
    return bytes(png)


def preview_detector(model_dir: Path) -> Any:
    """The face detector that blurs passers-by in the preview, or None (then the whole
    frame is blurred): a low threshold, a missed passer-by is worse than a blurred patch."""
    from gateway.errors import ModelError
    from gateway.face import models
    from gateway.face.detector import OpenCVYuNet
    from gateway.face.settings import FaceSettings

    try:
        path = models.require(Path(model_dir))[models.YUNET]
        return OpenCVYuNet(path, FaceSettings(detector_input=None, score_threshold=0.5))
    except (ModelError, OSError, KeyError) as exc:
        log.warning("zones preview: no face detector (%s)", exc)
        return None
