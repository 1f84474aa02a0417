"""bench_loop's set-up: constants, the machine description, the fake libgpiod, the
daemon's and the simulator's configuration, and the percentile helpers."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np

from gateway.demo.run import DemoStack
from hw_sim.config import SimConfig

CAMERA = "main-cam"
READER = "entry"
WIDTH, HEIGHT, FPS = 640, 480, 15
TARGET_P95_MS = 150.0  # issue #17
UNLOCK_TIMEOUT_S = 12.0
UNLOCK_SECONDS = 1  # short unlock so the door relocks quickly between approaches
GPIO_LINE = 17


# ----------------------------------------------------------------------------- machine
def machine() -> dict[str, str]:
    """CPU model, cores and library versions (for benchmarks/report)."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
        cpu = next((fields[k] for k in ("model name", "hardware", "model") if fields.get(k)), cpu)

    def ver(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} logical / {usable} usable",
        "python": platform.python_version(),
        "onnxruntime": ver("onnxruntime"),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "load_average": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


FAKE_GPIOD_DIR = Path(__file__).resolve().with_name("fake_gpiod")


class FakeGpio:
    """The fake libgpiod of ``benchmarks/fake_gpiod`` (output writes recorded with their
    monotonic time): in this process (:meth:`install`) and in a daemon process started with
    :meth:`process_env` in its environment, whose writes go to ``writes_file``."""

    def __init__(self, writes_file: Path | None = None) -> None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("gpiod", FAKE_GPIOD_DIR / "gpiod.py")
        if spec is None or spec.loader is None:
            raise SystemExit(f"bench_loop: cannot load {FAKE_GPIOD_DIR / 'gpiod.py'}")
        self.module: Any = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.module)
        self.writes_file = writes_file

    def install(self) -> None:
        sys.modules["gpiod"] = self.module

    def process_env(self) -> dict[str, str]:
        """Environment for a daemon process that must use this fake (and report to us)."""
        if self.writes_file is None:
            raise ValueError("a FakeGpio without writes_file cannot follow another process")
        paths = [str(FAKE_GPIOD_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
        return {"PYTHONPATH": os.pathsep.join(paths), "FAKE_GPIOD_WRITES": str(self.writes_file)}

    @property
    def writes(self) -> list[tuple[float, bool]]:
        """(monotonic time, active) of every output write, this process's and the file's."""
        out = list(self.module.WRITES)
        if self.writes_file is not None and self.writes_file.exists():
            for row in self.writes_file.read_text().splitlines():
                ts, active, *_ = row.split()
                out.append((float(ts), active == "1"))
        return sorted(out)


# ----------------------------------------------------------------------------- helpers
def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation (numpy's default)."""
    return float(np.percentile(np.asarray(values, np.float64), q))


def med(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def only_camera(text: str, camera: str) -> str:
    """The config without the other cameras, their doors and those doors' readers: the
    daemon then runs one camera path, so its CPU is that camera's (with the rest of a gate:
    MQTT, the OSDP readers of the doors left, the web console)."""
    import tomllib

    cfg = tomllib.loads(text)
    drop = {f"cameras.{c}" for c in cfg.get("cameras", {}) if c != camera}
    for name, door in cfg.get("doors", {}).items():
        cams = {door.get("camera"), *(door.get("pair") or {}).get("cameras", [])}
        if cams & {c.split(".", 1)[1] for c in drop}:
            drop.add(f"doors.{name}")
            if door.get("reader"):
                drop.add(f"readers.{door['reader']}")
    out: list[str] = []
    keep = True
    for line in text.splitlines(keepends=True):
        if line.startswith("[") and not line.startswith("[["):
            keep = line.strip().strip("[]") not in drop
        if keep:
            out.append(line)
    left = tomllib.loads("".join(out))
    if set(left.get("cameras", {})) != {camera}:
        raise SystemExit(f"bench_loop: could not reduce the demo config to camera {camera}")
    return "".join(out)


def without_camera(text: str, camera: str) -> str:
    """The config without ``camera``; its door keeps card and PIN (the daemon's CPU without
    any camera path: the baseline that CPU per camera is measured against)."""
    import tomllib

    out: list[str] = []
    section = ""
    for line in text.splitlines(keepends=True):
        if line.startswith("[") and not line.startswith("[["):
            section = line.strip().strip("[]")
        if section == f"cameras.{camera}":
            continue
        if section.startswith("doors.") and line == f'camera = "{camera}"\n':
            continue
        face_methods = line.startswith("methods = ") and '"face"' in line
        if section.startswith("doors.") and face_methods:
            out.append('methods = ["card", "pin", "card+pin"]\n')
        else:
            out.append(line)
    if tomllib.loads("".join(out)).get("cameras"):
        raise SystemExit(f"bench_loop: could not remove camera {camera} from the config")
    return "".join(out)


def write_config(stack: DemoStack, relay: str = "osdp") -> Path:
    """The demo config, adjusted: the benchmark's camera only, 15 fps, short unlock, quiet
    log; ``relay="gpio"``: the main gate's lock relay on GPIO line ``GPIO_LINE`` (the fake
    libgpiod)."""
    path = stack.write_config()
    text = only_camera(path.read_text(), CAMERA)
    if relay == "gpio":
        old = 'relay = { kind = "osdp", output = 0 }\n'
        if old not in text:
            raise SystemExit("bench_loop: the demo config no longer has an OSDP relay line")
        text = text.replace(old, f'relay = {{ kind = "gpio", line = {GPIO_LINE} }}\n', 1)
    for old, new in (
        ("fps = 10\n", f"fps = {FPS}\n"),
        ("width = 640\n", f"width = {WIDTH}\n"),
        ("height = 480\n", f"height = {HEIGHT}\n"),
        ("unlock_seconds = 5\n", f"unlock_seconds = {UNLOCK_SECONDS}\n"),
        ('log_level = "INFO"\n', 'log_level = "INFO"\n'),
    ):
        if old not in text:
            raise SystemExit(f"bench_loop: the demo config no longer contains {old.strip()!r}")
        text = text.replace(old, new)
    path.write_text(text)
    return path


def sim_config(faces: Path | None) -> SimConfig:
    data = SimConfig.demo().model_dump()
    data["cameras"][0].update(width=WIDTH, height=HEIGHT, fps=FPS)
    if faces is not None:
        data["faces"] = faces
    return SimConfig.model_validate(data)
