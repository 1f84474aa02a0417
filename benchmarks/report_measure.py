"""In-process measurements for benchmarks/report: the machine's description, 1:N search time."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
        # x86: "model name"; Raspberry Pi / ARM: "Model" or "Hardware"
        cpu = next((fields[k] for k in ("model name", "hardware") if fields.get(k)), cpu)
        if fields.get("model") and not fields.get("model name"):
            cpu = f"{fields['model']} ({cpu})"
    except OSError:
        pass
    try:
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        ram = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        ram = "unknown"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def ver(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    try:
        import cv2

        cv_version = cv2.__version__
    except ImportError:
        cv_version = "not installed"
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    try:
        commit = (
            subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
            or "no commit"
        )
    except OSError:
        commit = "unknown"
    return {
        "CPU": cpu,
        "cores (logical / usable by this process)": f"{os.cpu_count()} / {usable}",
        "RAM": ram,
        "OS": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "Python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": ver("onnxruntime"),
        "opencv": cv_version,
        "matplotlib": ver("matplotlib"),
        "face_recognition": ver("face_recognition"),
        "load average at start (1/5/15 min)": load,
        "git": commit,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def search_scaling(sizes: tuple[int, ...], repeats: int = 30) -> dict[str, Any]:
    """Median time of one 1:N search (top-2) against galleries of ``sizes`` templates."""
    rng = np.random.default_rng(0)
    dim = 128
    probes = rng.normal(size=(repeats, dim)).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    result: dict[str, Any] = {"sizes": list(sizes), "numpy_ms": [], "gateway_ms": [], "notes": []}
    gallery_cls = None
    try:
        from gateway.face.gallery import Gallery

        gallery_cls = Gallery
    except ImportError as exc:
        result["notes"].append(f"gateway.face.gallery.Gallery not available ({exc}): not measured")
    for n in sizes:
        t = rng.normal(size=(n, dim)).astype(np.float32)
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        times = []
        for p in probes:
            t0 = time.perf_counter()
            s = t @ p
            idx = np.argpartition(-s, 1)[:2] if n > 2 else np.arange(n)
            _ = idx[np.argsort(-s[idx])]
            times.append(time.perf_counter() - t0)
        result["numpy_ms"].append(1000 * statistics.median(times))
        if gallery_cls is not None:
            try:
                g = gallery_cls()
                # one template per person, as many people as templates
                for i in range(n):
                    g.replace_person(f"p{i}", t[i : i + 1])
                times = []
                for p in probes:
                    t0 = time.perf_counter()
                    g.search(p, k=2)
                    times.append(time.perf_counter() - t0)
                result["gateway_ms"].append(1000 * statistics.median(times))
            except Exception as exc:  # noqa: BLE001 - report, keep going
                result["notes"].append(f"Gallery failed at {n}: {type(exc).__name__}: {exc}")
                gallery_cls = None
        print(
            f"[report] 1:N search, {n} templates: numpy {result['numpy_ms'][-1]:.3f} ms"
            + (
                f", Gallery {result['gateway_ms'][-1]:.3f} ms"
                if len(result["gateway_ms"]) == len(result["numpy_ms"])
                else ""
            ),
            flush=True,
        )
    return result
