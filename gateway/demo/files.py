"""The demo gate's generated files: its keys and the daemon's TOML configuration."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path
from typing import Any


def write_secret(path: Path, data: bytes) -> Path:
    """Write a 0600 secret file (its folder 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


CONFIG_TEMPLATE = """
[site]
id = "{site}"
gate = "{gate}"
name = "Demo compound"
operator = "Demo Property Management"
contact = "demo office"

[readers.entry]
url = "{entry_url}"
protocol = "osdp"
scbk = {{ file = "{entry_scbk}" }}

[readers.side]
url = "{side_url}"
protocol = "osdp"
scbk = {{ file = "{side_scbk}" }}

[cameras.main-cam]
source = "{camera_url}"
door = "main-gate"
width = 640
height = 480
fps = 10
space = "public"
signage_installed = true
signage_recorded = "demo signage"
zones = [{zones}]

[doors.main-gate]
reader = "entry"
camera = "main-cam"
methods = ["face", "card", "pin", "card+pin"]
liveness = "{liveness}"
access_groups = ["residents", "visitors"]
unlock_seconds = 5
held_open_seconds = 8
relay = {{ kind = "osdp", output = 0 }}
contact = {{ kind = "osdp", input = 0 }}
exit_button = {{ kind = "osdp", input = 1 }}

[doors.side-door]
reader = "side"
methods = ["card+pin"]
access_groups = ["residents"]
relay = {{ kind = "osdp", output = 0 }}
contact = {{ kind = "osdp", input = 0 }}

{pair_doors}
[access_groups.residents]
[access_groups.visitors]

[face]
model_dir = "{model_dir}"
threads = 1
cooldown_s = 3
approach_gap_s = {approach_gap_s}

[mqtt]
url = "{mqtt_url}"
topic_prefix = "{prefix}"
protocol = "{protocol}"
command_keys = {{ {key_id} = "{command_key}" }}

[storage]
state_dir = "{state_dir}"

[privacy]
notice_file = "{notice}"
notice_version = "demo-1"
impact_assessment = {{ reference = "DEMO-PIA-1", date = {today} }}
device_key = {{ file = "{device_key}" }}
site_key = {{ file = "{site_key}" }}

[runtime]
log_level = "INFO"
"""


PAIR_DOOR = """
[readers.{reader}]
url = "{url}"
protocol = "osdp"
scbk = {{ file = "{scbk}" }}

[cameras.{camera}]
source = "{camera_url}"
door = "{door}"
width = 1280
height = 480
fps = 10
space = "public"
signage_installed = true
signage_recorded = "demo signage"

[doors.{door}]
reader = "{reader}"
camera = "{camera}"
pair.kind = "{kind}"
pair.layout = "side_by_side"
pair.calibration = "{calibration}"
pair.baseline_mm = {baseline_mm}
methods = ["face", "card", "pin"]
liveness = "required"
access_groups = ["residents", "visitors"]
unlock_seconds = 5
held_open_seconds = 8
relay = {{ kind = "osdp", output = 0 }}
contact = {{ kind = "osdp", input = 0 }}
"""
#: the demo's doors with a camera pair (a side-by-side camera each): door, reader, camera, kind
PAIR_DOORS = (
    ("stereo-gate", "stereo-entry", "stereo-cam", "stereo"),
    ("nir-gate", "nir-entry", "nir-cam", "rgb+nir"),
)


def demo_keys(folder: Path, sim: Any) -> dict[str, Path]:
    """Fresh device and site keys, and the simulator's reader keys, as secret files."""
    return {
        "device": write_secret(folder / "device-key", secrets.token_bytes(32)),
        "site": write_secret(folder / "site-key", secrets.token_bytes(32)),
        "entry": write_secret(folder / "scbk-entry", (sim.reader_scbk("entry") or "").encode()),
        "side": write_secret(folder / "scbk-side", (sim.reader_scbk("side") or "").encode()),
        **{
            reader: write_secret(
                folder / f"scbk-{reader}", (sim.reader_scbk(reader) or "").encode()
            )
            for _door, reader, _cam, _kind in PAIR_DOORS
        },
        **{
            f"calibration-{cam}": write_calibration(folder / f"{cam}.json", sim, cam)
            for _door, _reader, cam, _kind in PAIR_DOORS
        },
    }


def write_calibration(path: Path, sim: Any, camera: str) -> Path:
    """A simulated camera pair's calibration (an ideal rectified pair), as a file."""
    from gateway.face.calibration import ideal_pair

    cam = sim.config_camera(camera)
    baseline = cam.stereo_baseline_mm or cam.nir_baseline_mm
    cal = ideal_pair(cam.width, cam.height, cam.focal_px, baseline)
    path.write_text(cal.to_json(), encoding="utf-8")
    return path


def render_config(sim: Any, keys: dict[str, Path], **fields: Any) -> str:
    """The daemon's TOML: the simulator's URLs and zones, ``keys`` (:func:`demo_keys`) and
    the remaining template ``fields``."""
    zones = ", ".join(
        '{ name = "neighbour window", polygon = ['
        + ", ".join(f"[{x}, {y}]" for x, y in poly)
        + "] }"
        for poly in sim_zones(sim)
    )
    return CONFIG_TEMPLATE.format(
        entry_url=sim.reader_url("entry"),
        side_url=sim.reader_url("side"),
        entry_scbk=keys["entry"],
        side_scbk=keys["side"],
        camera_url=sim.camera_url("main-cam"),
        pair_doors="".join(_pair_door(sim, keys, d) for d in PAIR_DOORS),
        zones=zones,
        today=dt.datetime.now(dt.UTC).date().isoformat(),
        device_key=keys["device"],
        site_key=keys["site"],
        **fields,
    )


def sim_zones(sim: Any) -> list[list[tuple[float, float]]]:
    """The privacy zones of the simulator's main camera."""
    cams = getattr(sim, "config", None)
    zones: list[list[tuple[float, float]]] = []
    if cams is not None:
        for cam in cams.cameras:
            if cam.name == "main-cam":
                zones = [list(map(tuple, z)) for z in cam.zones]
    return zones


def _pair_door(sim: Any, keys: dict[str, Path], spec: tuple[str, str, str, str]) -> str:
    """One :data:`PAIR_DOORS` entry's reader, camera and door, as TOML."""
    door, reader, cam, kind = spec
    camera = sim.config_camera(cam)
    return PAIR_DOOR.format(
        door=door,
        reader=reader,
        camera=cam,
        kind=kind,
        url=sim.reader_url(reader),
        scbk=keys[reader],
        camera_url=sim.camera_url(cam),
        calibration=keys[f"calibration-{cam}"],
        baseline_mm=camera.stereo_baseline_mm or camera.nir_baseline_mm,
    )
