"""A valid configuration for the zones tests: the example's, its camera reading a still
image (a grey frame with a bright patch)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tomlkit

REPO = Path(__file__).resolve().parents[2]
CAMERA = "north-cam"


def zones_config(tmp_path: Path) -> Path:
    """The example configuration in ``tmp_path``, ``north-cam`` reading ``frame.png``."""
    frame = tmp_path / "frame.png"
    img = np.full((240, 320, 3), 90, np.uint8)
    img[20:60, 20:60] = 250
    cv2.imwrite(str(frame), img)
    doc = tomlkit.parse((REPO / "config" / "gateway.example.toml").read_text(encoding="utf-8"))
    cam = doc["cameras"][CAMERA]  # type: ignore[index]
    cam["source"] = str(frame)  # type: ignore[index]
    del cam["username"]  # type: ignore[attr-defined]
    del cam["password"]  # type: ignore[attr-defined]
    path = tmp_path / "gateway.toml"
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")
    return path
