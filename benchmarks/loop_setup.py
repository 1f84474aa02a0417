"""bench_loop's set-up: constants, the machine description, the fake libgpiod, the
daemon's and the simulator's configuration, and the percentile helpers."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import statistics
import sys
import time
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


class FakeGpio:
    """A fake libgpiod v2 module (``sys.modules["gpiod"]``): output lines record each write
    (monotonic time, level); input lines read high (pull-up, switch open)."""

    def __init__(self) -> None:
        import types

        self.writes: list[tuple[float, bool]] = []
        fake = self

        class Request:
            def set_value(self, line: int, value: Any) -> None:
                fake.writes.append((time.monotonic(), value == "active"))

            def get_values(self, lines: list[int]) -> list[str]:
                return ["active"] * len(lines)

            def release(self) -> None:
                pass

        mod: Any = types.ModuleType("gpiod")
        mod.request_lines = lambda chip, consumer, config: Request()
        mod.LineSettings = types.SimpleNamespace
        mod.line = types.SimpleNamespace(
            Direction=types.SimpleNamespace(OUTPUT="out", INPUT="in"),
            Value=types.SimpleNamespace(ACTIVE="active", INACTIVE="inactive"),
            Bias=types.SimpleNamespace(PULL_UP="pull-up"),
        )
        self.module = mod

    def install(self) -> None:
        sys.modules["gpiod"] = self.module


# ----------------------------------------------------------------------------- helpers
def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation (numpy's default)."""
    return float(np.percentile(np.asarray(values, np.float64), q))


def med(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def write_config(stack: DemoStack, relay: str = "osdp") -> Path:
    """The demo config, adjusted: 15 fps, short unlock, quiet log; ``relay="gpio"``: the main
    gate's lock relay on GPIO line ``GPIO_LINE`` (the fake libgpiod)."""
    path = stack.write_config()
    text = path.read_text()
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
